//! The one comparison of two objects of a kind, schema-aware: list types (atomic, set, map
//! keyed by its keys), defaults the server fills in, quantities in other notation, and the
//! fields that never count (status, server-set metadata, the service's own labels, ignore
//! rules). Drift (desired vs live), plans (stored vs pulled desired) and apply reports (live
//! before vs after) all use it, so a change counts the same everywhere.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::yaml::escape;

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

/// What the comparison needs besides the two objects.
pub struct Context<'a> {
    /// The kind's openAPIV3Schema (for list types and defaults); Null when unknown.
    pub schema: &'a Value,
    /// JSON pointers that never count (the fabric's ignore-differences for this kind).
    pub ignore: &'a [String],
    /// Labels the service itself puts on live objects.
    pub own_labels: &'a [&'a str],
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

/// A fabric's rule to ignore fields of a kind in every comparison (`fabrics.ignore_differences`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoreRule {
    /// Empty: the kind in any group.
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub json_pointers: Vec<String>,
}

/// The ignored JSON pointers of one kind.
pub fn ignored(rules: &[IgnoreRule], group: &str, kind: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.kind == kind && (r.group.is_empty() || r.group == group))
        .flat_map(|r| r.json_pointers.iter().cloned())
        .collect()
}

/// JSON pointers where `old` and `new` of a kind differ, for plans and apply reports: the
/// same comparison as drift, with no ignore rules.
pub fn changed_fields(old: &Value, new: &Value, schema: &Value) -> Vec<String> {
    diff(old, new, &Context { schema, ignore: &[], own_labels: &[] }).into_iter().map(|f| f.pointer).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_parse_in_every_notation() {
        assert_eq!(quantity(&json!("500m")), Some(0.5));
        assert_eq!(quantity(&json!("1e3")), quantity(&json!(1000)));
        assert_eq!(quantity(&json!("2E")), Some(2e18));
        assert_eq!(quantity(&json!("fast")), None);
    }

    #[test]
    fn a_reordered_map_list_is_no_change_anywhere() {
        // The schema keys `subnets` by name: the same entries in another order are equal, for
        // plans and apply reports as for drift.
        let schema = json!({"properties": {"spec": {"properties": {"subnets": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "vlan": {"type": "integer"}}}
        }}}}});
        let a = json!({"spec": {"subnets": [{"name": "a", "vlan": 1}, {"name": "b", "vlan": 2}]}});
        let b = json!({"spec": {"subnets": [{"name": "b", "vlan": 2}, {"name": "a", "vlan": 1}]}});
        assert!(changed_fields(&a, &b, &schema).is_empty());
        let c = json!({"spec": {"subnets": [{"name": "b", "vlan": 3}, {"name": "a", "vlan": 1}]}});
        // Pointers name the entry where the first object has it (b is its second).
        assert_eq!(changed_fields(&a, &c, &schema), ["/spec/subnets/1/vlan"]);
    }
}
