//! Drift between a resource's desired object (from Git) and its live object (from the watch):
//! pure, field by field, with the schema's list semantics and defaults, and who owns each
//! drifted field. Only real differences count.

use serde_json::Value;

use serde::{Deserialize, Serialize};

pub mod heal;

pub use crate::diff::{comparable_live, diff, Context, FieldDrift};
pub use crate::vocab::DriftStatus as Status;

/// A resource's computed drift as stored (`resources.drift`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredDrift {
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub fields: Vec<FieldDrift>,
    /// The field manager that kept changing the resource back, once self-heal gave up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contested_by: Option<String>,
}

/// One entry of a live object's managedFields summary as stored (`resources.field_managers`):
/// who last wrote which fields (JSON pointers), how and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldManager {
    pub manager: String,
    pub operation: String,
    /// RFC 3339, as the API server wrote it; empty when it gave none.
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The drift of one resource. `watching` says whether the live view is current (an absent live
/// object means missing only then).
pub fn resource_drift(
    desired: Option<&Value>,
    live: Option<&Value>,
    labelled: bool,
    watching: bool,
    field_managers: &[FieldManager],
    ctx: &Context,
) -> (Status, Vec<FieldDrift>) {
    match (desired, live) {
        (Some(d), Some(l)) => {
            let mut fields = diff(d, l, ctx);
            for f in &mut fields {
                f.managers = owners(&f.pointer, field_managers);
            }
            (if fields.is_empty() { Status::InSync } else { Status::Drifted }, fields)
        }
        (Some(_), None) if watching => (Status::Missing, Vec::new()),
        (None, Some(_)) if labelled => (Status::Orphaned, Vec::new()),
        (None, Some(_)) => (Status::InSync, Vec::new()), // not ours: nothing to say
        _ => (Status::Unknown, Vec::new()),
    }
}

/// A unified diff of the two objects as YAML (keys sorted so only content differs).
pub fn unified_yaml_diff(desired: Option<&Value>, live: Option<&Value>) -> String {
    let render = |v: Option<&Value>| v.map(yaml_text).unwrap_or_default();
    let (a, b) = (render(desired), render(live));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("desired (Git)", "live (cluster)")
        .to_string()
}

fn yaml_text(value: &Value) -> String {
    fn convert(v: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) if n.is_i64() => Yaml::Integer(n.as_i64().unwrap_or_default()),
            Value::Number(n) => Yaml::Real(n.to_string()),
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(convert).collect()),
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Yaml::Hash(keys.into_iter().map(|k| (Yaml::String(k.clone()), convert(&m[k]))).collect())
            }
        }
    }
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    if emitter.dump(&convert(value)).is_err() {
        return String::new();
    }
    out.push('\n');
    out
}

/// The owners of `pointer` in a managedFields summary (see `watch::field_managers`): managers
/// owning the field, a parent of it or a field inside it. Latest first.
pub fn owners(pointer: &str, managers: &[FieldManager]) -> Vec<(String, String, String)> {
    let touches =
        |f: &String| f == pointer || pointer.starts_with(&format!("{f}/")) || f.starts_with(&format!("{pointer}/"));
    let mut found: Vec<(String, String, String)> = managers
        .iter()
        .filter(|m| m.fields.iter().any(touches))
        .map(|m| (m.manager.clone(), m.operation.clone(), m.time.clone()))
        .collect();
    found.sort_by(|a, b| b.2.cmp(&a.2));
    found
}

/// The desired object with the live values of its drifted fields: what Git says once the
/// cluster's state is adopted (the opposite of a remediation). A field the cluster lacks is
/// removed; a map-list item only the cluster has (`/list/[key]`) is appended.
pub fn adopted(desired: &Value, fields: &[FieldDrift]) -> Value {
    let mut out = desired.clone();
    // Removals from lists go last and from the highest index, so earlier indices stay valid.
    let mut removals: Vec<&FieldDrift> = Vec::new();
    for field in fields {
        match &field.live {
            Some(live) => set(&mut out, &field.pointer, live.clone()),
            None => removals.push(field),
        }
    }
    // Within one list, highest index first; numbers compared as numbers.
    let order = |f: &FieldDrift| {
        let (parent, last) = f.pointer.rsplit_once('/').unwrap_or(("", &f.pointer));
        (parent.to_owned(), std::cmp::Reverse(last.parse::<usize>().unwrap_or(usize::MAX)))
    };
    removals.sort_by_key(|f| order(f));
    for field in removals {
        remove(&mut out, &field.pointer);
    }
    out
}

/// A pointer's segments; a map-list item's `[key]` (whose key values may hold '/') is one.
fn segments(pointer: &str) -> Vec<String> {
    let (path, item) = match pointer.find("/[") {
        Some(i) => (&pointer[..i], Some(&pointer[i + 1..])),
        None => (pointer, None),
    };
    let mut parts: Vec<String> = path.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    parts.extend(item.map(str::to_owned));
    parts
}

fn set(target: &mut Value, pointer: &str, value: Value) {
    let parts = segments(pointer);
    let Some((last, parents)) = parts.split_last() else {
        *target = value;
        return;
    };
    let mut at = target;
    for part in parents {
        at = match at {
            Value::Array(items) => match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            other => {
                if !other.is_object() {
                    *other = Value::Object(Default::default());
                }
                match other.as_object_mut() {
                    Some(map) => map.entry(part.clone()).or_insert_with(|| Value::Object(Default::default())),
                    None => return,
                }
            }
        };
    }
    match at {
        Value::Array(items) if last.starts_with('[') => items.push(value),
        Value::Array(items) => {
            if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = value;
            }
        }
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        other => *other = serde_json::json!({ last.clone(): value }),
    }
}

fn remove(target: &mut Value, pointer: &str) {
    let parts = segments(pointer);
    let Some((last, parents)) = parts.split_last() else { return };
    let mut at = target;
    for part in parents {
        at = match at {
            Value::Array(items) => match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            Value::Object(map) => match map.get_mut(part) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    match at {
        Value::Array(items) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        Value::Object(map) => {
            map.remove(last);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn adopting_writes_the_live_values_of_drifted_fields_only() {
        let desired = json!({"spec": {"a": 1, "b": "keep", "gone": true, "list": [{"name": "x", "v": 1}, {"name": "y", "v": 2}],
                                      "many": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "cidrs": []}});
        let field = |pointer: &str, live: Option<serde_json::Value>| FieldDrift {
            pointer: pointer.into(),
            desired: None,
            live,
            managers: vec![],
        };
        let fields = [
            field("/spec/a", Some(json!(2))),
            field("/spec/gone", None),
            field("/spec/new~1field", Some(json!("n"))),
            field("/spec/list/0/v", Some(json!(10))),
            field("/spec/list/1", None),
            field("/spec/many/2", None),
            field("/spec/many/10", None),
            field("/spec/cidrs/[\"10.0.0.0/8\"]", Some(json!({"cidr": "10.0.0.0/8"}))),
            field("/spec/list/[\"z\"]", Some(json!({"name": "z", "v": 3}))),
            field("/spec/deep/er", Some(json!(1))),
        ];
        assert_eq!(
            adopted(&desired, &fields),
            json!({"spec": {"a": 2, "b": "keep", "new/field": "n", "deep": {"er": 1},
                            "list": [{"name": "x", "v": 10}, {"name": "z", "v": 3}],
                            "many": [0, 1, 3, 4, 5, 6, 7, 8, 9, 11], "cidrs": [{"cidr": "10.0.0.0/8"}]}})
        );
    }

    use super::*;

    fn ctx<'a>(schema: &'a Value, ignore: &'a [String]) -> Context<'a> {
        Context { schema, ignore, own_labels: &["fabricsync.dev/fabric"] }
    }

    fn pointers(d: &[FieldDrift]) -> Vec<&str> {
        d.iter().map(|f| f.pointer.as_str()).collect()
    }

    #[test]
    fn server_fields_status_and_own_labels_are_not_drift() {
        let desired = json!({"apiVersion": "v", "kind": "VPC", "metadata": {"name": "a", "namespace": "default", "labels": {"team": "net"}}, "spec": {"vlan": 10}});
        let live = json!({"apiVersion": "v", "kind": "VPC",
            "metadata": {"name": "a", "namespace": "default", "uid": "u", "resourceVersion": "9", "generation": 3, "creationTimestamp": "t",
                         "labels": {"team": "net", "fabricsync.dev/fabric": "lab"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"vlan": 10.0}, "status": {"ready": true}});
        assert!(diff(&desired, &live, &ctx(&Value::Null, &[])).is_empty());
    }

    #[test]
    fn changed_missing_and_extra_fields_are_named_with_values() {
        let desired = json!({"metadata": {"labels": {"team": "net"}}, "spec": {"vlan": 10, "subnets": {"a": {"subnet": "10.0.0.0/24"}}}});
        let live = json!({"metadata": {"labels": {"team": "ops"}}, "spec": {"vlan": 11, "subnets": {}, "extra": true}});
        let d = diff(&desired, &live, &ctx(&Value::Null, &[]));
        assert_eq!(pointers(&d), ["/metadata/labels/team", "/spec/extra", "/spec/subnets/a", "/spec/vlan"]);
        assert_eq!((d[3].desired.clone(), d[3].live.clone()), (Some(json!(10)), Some(json!(11))));
        assert_eq!(d[2].live, None);
        let ignored =
            diff(&desired, &live, &ctx(&Value::Null, &["/spec/subnets".to_string(), "/spec/extra".to_string()]));
        assert_eq!(pointers(&ignored), ["/metadata/labels/team", "/spec/vlan"]);
    }

    #[test]
    fn schema_defaults_filled_by_the_server_are_not_drift() {
        let schema = json!({"properties": {"spec": {"properties": {
            "mtu": {"type": "integer", "default": 9036},
            "bgp": {"type": "object", "properties": {"timer": {"type": "integer", "default": 30}}}}}}});
        let desired = json!({"spec": {}});
        let live = json!({"spec": {"mtu": 9036, "bgp": {"timer": 30}}});
        assert!(diff(&desired, &live, &ctx(&schema, &[])).is_empty());
        let changed = json!({"spec": {"mtu": 1500, "bgp": {"timer": 30}}});
        assert_eq!(pointers(&diff(&desired, &changed, &ctx(&schema, &[]))), ["/spec/mtu"]);
    }

    #[test]
    fn lists_follow_their_schema_type() {
        let schema = json!({"properties": {"spec": {"properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            "order": {"type": "array"}}}}});
        let desired = json!({"spec": {"ports": [{"name": "a", "speed": 10}, {"name": "b", "speed": 25}], "tags": ["x", "y"], "order": [1, 2]}});
        let reordered = json!({"spec": {"ports": [{"name": "b", "speed": 25}, {"name": "a", "speed": 10}], "tags": ["y", "x"], "order": [1, 2]}});
        assert!(diff(&desired, &reordered, &ctx(&schema, &[])).is_empty());
        let changed = json!({"spec": {"ports": [{"name": "b", "speed": 100}, {"name": "a", "speed": 10}, {"name": "c"}], "tags": ["x"], "order": [2, 1]}});
        assert_eq!(
            pointers(&diff(&desired, &changed, &ctx(&schema, &[]))),
            ["/spec/order/0", "/spec/order/1", "/spec/ports/1/speed", "/spec/ports/[\"c\"]", "/spec/tags"]
        );
    }

    #[test]
    fn quantities_in_other_notation_are_equal_where_the_schema_allows_them() {
        let schema = json!({"properties": {"spec": {"properties": {"size": {"x-kubernetes-int-or-string": true}, "name": {"type": "string"}}}}});
        let desired = json!({"spec": {"size": "1Gi", "name": "1k"}});
        let live = json!({"spec": {"size": "1024Mi", "name": "1000"}});
        assert_eq!(pointers(&diff(&desired, &live, &ctx(&schema, &[]))), ["/spec/name"]);
    }

    #[test]
    fn unified_diff_shows_the_changed_line_only() {
        let desired = json!({"metadata": {"name": "a"}, "spec": {"vlan": 10, "ipv4Namespace": "default"}});
        let live = comparable_live(
            &json!({"metadata": {"name": "a", "uid": "u", "labels": {"fabricsync.dev/fabric": "lab"}}, "spec": {"vlan": 11, "ipv4Namespace": "default"}, "status": {}}),
            &["fabricsync.dev/fabric"],
        );
        let text = unified_yaml_diff(Some(&desired), Some(&live));
        assert!(text.contains("-  vlan: 10\n+  vlan: 11"), "{text}");
        assert!(!text.contains("uid") && !text.contains("status") && !text.contains("fabricsync.dev"), "{text}");
    }

    #[test]
    fn statuses_and_owners() {
        let d = json!({"spec": {"vlan": 10}});
        let l = json!({"spec": {"vlan": 11}});
        let managers: Vec<FieldManager> = serde_json::from_value(json!([
            {"manager": "fabricsync", "operation": "Apply", "time": "2026-11-25T10:00:00Z", "fields": ["/metadata/labels/x"]},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-25T11:00:00Z", "fields": ["/spec/vlan"]}
        ]))
        .unwrap();
        let c = ctx(&Value::Null, &[]);
        let (status, fields) = resource_drift(Some(&d), Some(&l), true, true, &managers, &c);
        assert_eq!(status, Status::Drifted);
        assert_eq!(
            fields[0].managers,
            [("kubectl-edit".to_string(), "Update".to_string(), "2026-11-25T11:00:00Z".to_string())]
        );
        assert_eq!(resource_drift(Some(&d), Some(&d), true, true, &[], &c).0, Status::InSync);
        assert_eq!(resource_drift(Some(&d), None, false, true, &[], &c).0, Status::Missing);
        assert_eq!(resource_drift(Some(&d), None, false, false, &[], &c).0, Status::Unknown);
        assert_eq!(resource_drift(None, Some(&l), true, true, &[], &c).0, Status::Orphaned);
        assert_eq!(resource_drift(None, Some(&l), false, true, &[], &c).0, Status::InSync);
    }
}
