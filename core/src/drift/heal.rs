//! Self-heal's memory of reverts, per drifted field, stored with the resource (so a process
//! that takes the watch over keeps counting): `{"<JSON pointer>": [unix ms, ...]}`, the
//! pointer "" standing for the whole object (a deleted one).

use std::collections::BTreeMap;

use serde_json::Value;

/// What self-heal does about a drifted resource.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Revert it; store these reverts.
    Revert(Value),
    /// A field was already reverted `max` times in the window: another writer keeps changing
    /// it; stop and mark the resource contested.
    Contested { field: String },
}

/// Pure: the verdict for `fields` drifting at `now_ms`, given the stored reverts.
pub fn verdict(stored: Option<&Value>, fields: &[String], now_ms: i64, max: usize, window_ms: i64) -> Verdict {
    let mut reverts: BTreeMap<String, Vec<i64>> =
        stored.and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    for times in reverts.values_mut() {
        times.retain(|t| now_ms - t < window_ms);
    }
    reverts.retain(|_, times| !times.is_empty());
    if let Some(field) = fields.iter().find(|f| reverts.get(*f).is_some_and(|t| t.len() >= max)) {
        return Verdict::Contested { field: field.clone() };
    }
    for field in fields {
        reverts.entry(field.clone()).or_default().push(now_ms);
    }
    Verdict::Revert(serde_json::to_value(reverts).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_field_reverted_max_times_in_the_window_is_contested() {
        let a = fields(&["/spec/a"]);
        let mut stored = None;
        for now in [0, 10, 20] {
            match verdict(stored.as_ref(), &a, now, 3, 100) {
                Verdict::Revert(v) => stored = Some(v),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(verdict(stored.as_ref(), &a, 30, 3, 100), Verdict::Contested { field: "/spec/a".into() });
        // Another field of the same resource has its own count.
        assert!(matches!(verdict(stored.as_ref(), &fields(&["/spec/b"]), 30, 3, 100), Verdict::Revert(_)));
        // Reverts older than the window are forgotten.
        assert!(matches!(verdict(stored.as_ref(), &a, 115, 3, 100), Verdict::Revert(_)));
    }

    #[test]
    fn unreadable_memory_starts_afresh() {
        let Verdict::Revert(v) = verdict(Some(&Value::String("junk".into())), &fields(&[""]), 5, 1, 100) else {
            panic!()
        };
        assert_eq!(v, serde_json::json!({"": [5]}));
    }
}
