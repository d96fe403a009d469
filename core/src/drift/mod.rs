//! Drift between a resource's desired object (from Git) and its live object (from the watch):
//! pure, field by field, with the schema's list semantics and defaults, and who owns each
//! drifted field. Only real differences count.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use serde::{Deserialize, Serialize};

use crate::manifest::yaml::escape;

pub mod heal;

pub use crate::vocab::DriftStatus as Status;

/// One drifted field: where, the two values (None = absent), and who owns it live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDrift {
    #[serde(rename = "path")]
    pub pointer: String,
    pub desired: Option<Value>,
    pub live: Option<Value>,
    /// (manager, operation, time) of the live field's owners, latest first.
    #[serde(default)]
    pub managers: Vec<(String, String, String)>,
}

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

/// What the comparison needs besides the two objects.
pub struct Context<'a> {
    /// The kind's openAPIV3Schema (for list types and defaults); Null when unknown.
    pub schema: &'a Value,
    /// JSON pointers that never count (the fabric's ignore-differences for this kind).
    pub ignore: &'a [String],
    /// Labels the service itself puts on live objects.
    pub own_labels: &'a [&'a str],
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

/// Field-level differences of desired and live (without owners).
pub fn diff(desired: &Value, live: &Value, ctx: &Context) -> Vec<FieldDrift> {
    let mut out = Vec::new();
    // Metadata: only the labels and annotations Git sets are compared; the rest is the server's.
    for part in ["labels", "annotations"] {
        let wanted = desired.pointer(&format!("/metadata/{part}")).and_then(Value::as_object);
        let have = live.pointer(&format!("/metadata/{part}")).and_then(Value::as_object);
        for (key, value) in wanted.into_iter().flatten() {
            if ctx.own_labels.contains(&key.as_str()) {
                continue;
            }
            let pointer = format!("/metadata/{part}/{}", escape(key));
            let live_value = have.and_then(|h| h.get(key));
            if live_value != Some(value) {
                push(&mut out, ctx, pointer, Some(value), live_value);
            }
        }
    }
    // Everything else but identity and status, with the schema's semantics.
    let top = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    walk("", Some(&Value::Object(top(desired))), Some(&Value::Object(top(live))), ctx.schema, ctx, &mut out);
    out
}

fn push(out: &mut Vec<FieldDrift>, ctx: &Context, pointer: String, desired: Option<&Value>, live: Option<&Value>) {
    let ignored = ctx.ignore.iter().any(|i| pointer == *i || pointer.starts_with(&format!("{i}/")));
    if !ignored {
        out.push(FieldDrift { pointer, desired: desired.cloned(), live: live.cloned(), managers: Vec::new() });
    }
}

fn child_schema<'a>(schema: &'a Value, key: &str) -> &'a Value {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
        .unwrap_or(&Value::Null)
}

fn walk(
    pointer: &str,
    desired: Option<&Value>,
    live: Option<&Value>,
    schema: &Value,
    ctx: &Context,
    out: &mut Vec<FieldDrift>,
) {
    match (desired, live) {
        (None, None) => {}
        (Some(Value::Object(d)), Some(Value::Object(l))) => {
            let keys: BTreeSet<&String> = d.keys().chain(l.keys()).collect();
            for key in keys {
                let path = format!("{pointer}/{}", escape(key));
                walk(&path, d.get(key), l.get(key), child_schema(schema, key), ctx, out);
            }
        }
        (Some(Value::Array(d)), Some(Value::Array(l))) => compare_lists(pointer, d, l, schema, ctx, out),
        (Some(d), Some(l)) => {
            let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
            let same = same_scalar(d, l) || (int_or_string && quantity(d).is_some_and(|q| Some(q) == quantity(l)));
            if !same {
                push(out, ctx, pointer.to_string(), Some(d), Some(l));
            }
        }
        // Git leaves it unset and the server filled in the schema's default: not drift.
        (None, Some(l)) if schema.get("default").is_some_and(|def| same_value(def, l, schema)) => {}
        // Defaults nested in an object the server created whole.
        (None, Some(l)) if is_all_defaults(l, schema) => {}
        (d, l) => push(out, ctx, pointer.to_string(), d, l),
    }
}

/// Whether an object holds nothing but its schema's defaults (e.g. a defaulted sub-object).
fn is_all_defaults(value: &Value, schema: &Value) -> bool {
    match value {
        Value::Object(m) if !m.is_empty() => m.iter().all(|(k, v)| {
            let s = child_schema(schema, k);
            s.get("default").is_some_and(|d| same_value(d, v, s)) || is_all_defaults(v, s)
        }),
        _ => false,
    }
}

/// Lists by their schema type: `map` by the key fields, `set` as sets, otherwise in order.
fn compare_lists(pointer: &str, d: &[Value], l: &[Value], schema: &Value, ctx: &Context, out: &mut Vec<FieldDrift>) {
    let items = schema.get("items").unwrap_or(&Value::Null);
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |v: &Value| keys.iter().map(|k| v.get(*k).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>();
            for (i, item) in d.iter().enumerate() {
                let found = l.iter().find(|x| key_of(x) == key_of(item));
                walk(&format!("{pointer}/{i}"), Some(item), found, items, ctx, out);
            }
            for item in l.iter().filter(|x| !d.iter().any(|y| key_of(y) == key_of(x))) {
                let key: Vec<String> = key_of(item).iter().map(|v| v.to_string()).collect();
                push(out, ctx, format!("{pointer}/[{}]", key.join(",")), None, Some(item));
            }
        }
        Some("set") => {
            let d_set: BTreeSet<String> = d.iter().map(canonical).collect();
            let l_set: BTreeSet<String> = l.iter().map(canonical).collect();
            if d_set != l_set {
                push(out, ctx, pointer.to_string(), Some(&Value::Array(d.to_vec())), Some(&Value::Array(l.to_vec())));
            }
        }
        _ if d.len() == l.len() => {
            for (i, (a, b)) in d.iter().zip(l).enumerate() {
                walk(&format!("{pointer}/{i}"), Some(a), Some(b), items, ctx, out);
            }
        }
        _ => push(out, ctx, pointer.to_string(), Some(&Value::Array(d.to_vec())), Some(&Value::Array(l.to_vec()))),
    }
}

fn canonical(v: &Value) -> String {
    crate::manifest::canonical_json(v)
}

/// Scalars equal in meaning: numbers by value (1 == 1.0).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A Kubernetes quantity ("1Gi", "1024Mi", "500m", "1e3", 2) as a number, for int-or-string
/// fields where the server may rewrite the notation.
fn quantity(v: &Value) -> Option<f64> {
    let text = match v {
        Value::Number(n) => return n.as_f64(),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    text.strip_suffix('E').map_or_else(|| text.parse().ok(), |n| n.parse::<f64>().ok().map(|n| n * 1e18))
}

fn same_value(a: &Value, b: &Value, schema: &Value) -> bool {
    let ctx = Context { schema, ignore: &[], own_labels: &[] };
    let mut out = Vec::new();
    walk("", Some(a), Some(b), schema, &ctx, &mut out);
    out.is_empty()
}

/// The live object as a user compares it with Git: without status, server-set metadata and the
/// service's own label.
pub fn comparable_live(live: &Value, own_labels: &[&str]) -> Value {
    let mut out = live.clone();
    if let Some(object) = out.as_object_mut() {
        object.remove("status");
    }
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.retain(|k, _| !own_labels.contains(&k.as_str()));
            if labels.is_empty() {
                metadata.remove("labels");
            }
        }
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.retain(|k, _| k != "kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        assert_eq!(quantity(&json!("500m")), Some(0.5));
        assert_eq!(quantity(&json!("1e3")), quantity(&json!(1000)));
        assert_eq!(quantity(&json!("2E")), Some(2e18));
        assert_eq!(quantity(&json!("fast")), None);
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
