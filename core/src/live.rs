//! The watch's live index: a pure state update per watcher event (kube's reflector pattern),
//! keyed by (group, kind, namespace, name). It turns the events of a fabric's watches into the
//! changes to store and tells when the live view is complete.

use std::collections::{HashMap, HashSet};

use crate::vocab::WatchStatus;
use crate::ResourceKey;

/// A watched kind: (group, kind).
pub type KindId = (String, String);

/// One event of a kind's watch, as the watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A (re)list of the kind begins (the first one, or after an expired resourceVersion: 410).
    ListStarted(KindId),
    /// An object seen by a list or the watch, at this resourceVersion.
    Applied(ResourceKey, String),
    Deleted(ResourceKey),
    /// The kind's (re)list is complete: what it did not list is gone.
    ListDone(KindId),
}

/// What an event changes in the stored live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(ResourceKey),
    Modified(ResourceKey),
    Deleted(ResourceKey),
}

#[derive(Debug, Default)]
pub struct LiveIndex {
    /// Every live object stored, with its resourceVersion.
    known: HashMap<ResourceKey, String>,
    /// Objects seen by the list in progress, per kind.
    listing: HashMap<KindId, HashSet<ResourceKey>>,
    /// Kinds whose first list completed.
    listed: HashSet<KindId>,
    kinds: HashSet<KindId>,
}

fn kind_of(key: &ResourceKey) -> KindId {
    (key.group.clone(), key.kind.clone())
}

impl LiveIndex {
    /// An index of `kinds`, starting from what is stored (key, resourceVersion).
    pub fn new(
        kinds: impl IntoIterator<Item = KindId>,
        stored: impl IntoIterator<Item = (ResourceKey, String)>,
    ) -> Self {
        LiveIndex { known: stored.into_iter().collect(), kinds: kinds.into_iter().collect(), ..LiveIndex::default() }
    }

    /// The pure step: the changes `event` makes (several for a completed relist).
    pub fn apply(&mut self, event: Event) -> Vec<Change> {
        match event {
            Event::ListStarted(kind) => {
                self.listing.insert(kind, HashSet::new());
                Vec::new()
            }
            Event::Applied(key, resource_version) => {
                if let Some(seen) = self.listing.get_mut(&kind_of(&key)) {
                    seen.insert(key.clone());
                }
                match self.known.insert(key.clone(), resource_version.clone()) {
                    Some(old) if old == resource_version => Vec::new(), // a relist of what is stored
                    Some(_) => vec![Change::Modified(key)],
                    None => vec![Change::Added(key)],
                }
            }
            Event::Deleted(key) => {
                if let Some(seen) = self.listing.get_mut(&kind_of(&key)) {
                    seen.remove(&key);
                }
                match self.known.remove(&key) {
                    Some(_) => vec![Change::Deleted(key)],
                    None => Vec::new(),
                }
            }
            Event::ListDone(kind) => {
                // A list that was never started (the watcher restarted before this index saw
                // it begin) removes nothing: only what a full list did not see is gone.
                let Some(seen) = self.listing.remove(&kind) else {
                    self.listed.insert(kind);
                    return Vec::new();
                };
                let mut gone: Vec<ResourceKey> =
                    self.known.keys().filter(|k| kind_of(k) == kind && !seen.contains(*k)).cloned().collect();
                gone.sort();
                for key in &gone {
                    self.known.remove(key);
                }
                self.listed.insert(kind);
                gone.into_iter().map(Change::Deleted).collect()
            }
        }
    }

    /// Active once every kind was listed once; drift can be told only then.
    pub fn status(&self) -> WatchStatus {
        if self.kinds.iter().all(|k| self.listed.contains(k)) {
            WatchStatus::Active
        } else {
            WatchStatus::Starting
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc() -> KindId {
        ("vpc.githedgehog.com".into(), "VPC".into())
    }
    fn key(name: &str) -> ResourceKey {
        ResourceKey::new("vpc.githedgehog.com", "VPC", "default", name)
    }
    fn applied(name: &str, rv: &str) -> Event {
        Event::Applied(key(name), rv.into())
    }

    #[test]
    fn first_list_adds_and_activates() {
        let mut index = LiveIndex::new([vpc()], []);
        assert_eq!(index.apply(Event::ListStarted(vpc())), []);
        assert_eq!(index.apply(applied("a", "1")), [Change::Added(key("a"))]);
        assert_eq!(index.status(), WatchStatus::Starting);
        assert_eq!(index.apply(Event::ListDone(vpc())), []);
        assert_eq!(index.status(), WatchStatus::Active);
    }

    #[test]
    fn relist_of_stored_objects_changes_only_what_moved() {
        let mut index =
            LiveIndex::new([vpc()], [(key("a"), "1".into()), (key("b"), "1".into()), (key("c"), "1".into())]);
        index.apply(Event::ListStarted(vpc()));
        assert_eq!(index.apply(applied("a", "1")), []);
        assert_eq!(index.apply(applied("b", "2")), [Change::Modified(key("b"))]);
        // c was deleted while the server was down: the list does not show it.
        assert_eq!(index.apply(Event::ListDone(vpc())), [Change::Deleted(key("c"))]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn deletion_during_relist_is_not_resurrected() {
        let mut index = LiveIndex::new([vpc()], [(key("a"), "1".into())]);
        index.apply(Event::ListStarted(vpc()));
        index.apply(applied("a", "1"));
        assert_eq!(index.apply(Event::Deleted(key("a"))), [Change::Deleted(key("a"))]);
        assert_eq!(index.apply(Event::ListDone(vpc())), []);
        assert!(index.is_empty());
    }

    #[test]
    fn expired_watch_relists_and_drops_what_was_deleted_meanwhile() {
        // After 410 Gone the watcher lists again: an object added by the watch before the
        // restart and deleted while the watch was down must go, though it was seen before.
        let mut index = LiveIndex::new([vpc()], []);
        index.apply(Event::ListStarted(vpc()));
        index.apply(Event::ListDone(vpc()));
        assert_eq!(index.apply(applied("x", "5")), [Change::Added(key("x"))]);
        index.apply(Event::ListStarted(vpc()));
        assert_eq!(index.apply(applied("y", "9")), [Change::Added(key("y"))]);
        assert_eq!(index.apply(Event::ListDone(vpc())), [Change::Deleted(key("x"))]);
        assert_eq!(index.status(), WatchStatus::Active);
    }

    #[test]
    fn kinds_are_told_apart_by_group() {
        let other = ResourceKey::new("other.example.com", "VPC", "default", "a");
        let mut index = LiveIndex::new([vpc()], [(other.clone(), "1".into())]);
        index.apply(Event::ListStarted(vpc()));
        assert_eq!(index.apply(Event::ListDone(vpc())), []);
        assert_eq!(index.len(), 1, "a same-named kind of another group is not this list's");
    }

    #[test]
    fn unknown_deletes_and_repeated_events_change_nothing() {
        let mut index = LiveIndex::new([vpc()], []);
        assert_eq!(index.apply(Event::Deleted(key("nope"))), []);
        index.apply(applied("a", "1"));
        assert_eq!(index.apply(applied("a", "1")), []);
    }
}
