//! What a pull changes in the stored desired state: pure, from the parsed objects and the
//! stored (key, hash) index.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::manifest::Object;
use crate::ResourceKey;

/// A stored resource as a plan sees it: every resource of the fabric with a desired object or
/// a live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: Uuid,
    pub key: ResourceKey,
    pub desired_hash: Option<String>,
    pub has_live: bool,
}

pub use crate::vocab::ChangeAction as Action;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: ResourceKey,
    /// API version of the desired object; empty for deletions.
    pub version: String,
    pub action: Action,
    /// JSON pointers of the fields that differ (updates only, when the old object is known).
    pub changed_fields: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes into the objects given to `plan` that must be written (created or updated).
    pub writes: Vec<usize>,
    /// Stored resources whose desired object goes away.
    pub removals: Vec<Uuid>,
    /// Created, updated and deleted objects, in key order (unchanged ones are only counted).
    pub changes: Vec<Change>,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
}

/// Compares parsed objects with the stored index. Objects must have unique keys (validation
/// rejects duplicates before this runs).
pub fn plan<O: Borrow<Object>>(objects: &[O], stored: &[IndexEntry]) -> Plan {
    let stored_by_key: HashMap<&ResourceKey, &IndexEntry> =
        stored.iter().filter(|e| e.desired_hash.is_some()).map(|e| (&e.key, e)).collect();
    let mut plan = Plan::default();
    let mut seen = std::collections::HashSet::with_capacity(objects.len());
    for (index, object) in objects.iter().map(Borrow::borrow).enumerate() {
        let key = object.key();
        let action = match stored_by_key.get(&key) {
            None => Action::Create,
            Some(entry) if entry.desired_hash.as_deref() == Some(object.hash.as_str()) => Action::Unchanged,
            Some(_) => Action::Update,
        };
        match action {
            Action::Create => plan.created += 1,
            Action::Update => plan.updated += 1,
            _ => plan.unchanged += 1,
        }
        if action != Action::Unchanged {
            plan.writes.push(index);
            plan.changes.push(Change {
                key: key.clone(),
                version: object.version.clone(),
                action,
                changed_fields: Vec::new(),
            });
        }
        seen.insert(key);
    }
    for (key, entry) in &stored_by_key {
        if !seen.contains(*key) {
            plan.deleted += 1;
            plan.removals.push(entry.id);
            plan.changes.push(Change {
                key: (*key).clone(),
                version: String::new(),
                action: Action::Delete,
                changed_fields: Vec::new(),
            });
        }
    }
    plan.changes.sort_by(|a, b| a.key.cmp(&b.key));
    plan
}

/// Objects per (group, kind), in order.
pub fn kind_counts<O: Borrow<Object>>(objects: &[O]) -> Vec<(String, String, i64)> {
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for o in objects.iter().map(Borrow::borrow) {
        *counts.entry((o.group.as_str(), o.kind.as_str())).or_default() += 1;
    }
    counts.into_iter().map(|((g, k), n)| (g.to_string(), k.to_string(), n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, name: &str, hash: &str) -> Object {
        Object {
            group: "wiring.githedgehog.com".into(),
            version: "v1beta1".into(),
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
            file: "f.yaml".into(),
            document: 0,
            line: 1,
            body: json!({}),
            hash: hash.into(),
            positions: Default::default(),
        }
    }

    fn entry(kind: &str, name: &str, hash: Option<&str>) -> IndexEntry {
        IndexEntry {
            id: Uuid::new_v4(),
            key: ResourceKey::new("wiring.githedgehog.com", kind, "default", name),
            desired_hash: hash.map(str::to_owned),
            has_live: false,
        }
    }

    #[test]
    fn creates_updates_unchanged_and_deletes() {
        let objects =
            vec![object("Switch", "s1", "h1"), object("Switch", "s2", "h2-new"), object("Server", "srv", "h3")];
        let gone = entry("Switch", "s9", Some("h9"));
        let live_only = entry("Switch", "orphan", None);
        let stored =
            vec![entry("Switch", "s1", Some("h1")), entry("Switch", "s2", Some("h2")), gone.clone(), live_only];
        let plan = plan(&objects, &stored);
        assert_eq!((plan.created, plan.updated, plan.unchanged, plan.deleted), (1, 1, 1, 1));
        assert_eq!(plan.writes, vec![1, 2]);
        assert_eq!(plan.removals, vec![gone.id]);
        let actions: Vec<(&str, Action)> = plan.changes.iter().map(|c| (c.key.name.as_str(), c.action)).collect();
        assert_eq!(actions, vec![("srv", Action::Create), ("s2", Action::Update), ("s9", Action::Delete)]);
    }

    #[test]
    fn identical_input_plans_nothing() {
        let objects = vec![object("Switch", "s1", "h1")];
        let plan = plan(&objects, &[entry("Switch", "s1", Some("h1"))]);
        assert!(plan.writes.is_empty() && plan.removals.is_empty() && plan.changes.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn kind_counts_group_by_kind() {
        let objects = vec![object("Switch", "a", "1"), object("Switch", "b", "2"), object("Server", "c", "3")];
        assert_eq!(
            kind_counts(&objects),
            vec![
                ("wiring.githedgehog.com".into(), "Server".into(), 1),
                ("wiring.githedgehog.com".into(), "Switch".into(), 2)
            ]
        );
    }
}
