//! Structural validation of an object against a CRD openAPIV3Schema (the subset Kubernetes
//! structural schemas use): types, required, enum, pattern, bounds, unknown fields.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::Value;

use super::yaml::escape;

/// A violation: JSON pointer, stable code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

/// Validates `value` at `pointer` against `schema`, appending violations.
pub fn validate(value: &Value, schema: &Value, pointer: &str, out: &mut Vec<Violation>) {
    let mut v = |code, message: String| out.push(Violation { pointer: pointer.to_string(), code, message });
    // Kubernetes drops null fields; normalization does the same.
    if value.is_null() {
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let ok = match expected {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string() || (int_or_string && value.is_i64()),
            "integer" => value.is_i64() || value.is_u64() || (int_or_string && value.is_string()),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            v("schema.type", format!("must be {} {expected}, got {}", article(expected), describe(value)));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            v("schema.enum", format!("must be one of {}, got {value}", list.join(", ")));
        }
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
                v("schema.min_length", format!("must be at least {min} characters, got {len}"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
                v("schema.max_length", format!("must be at most {max} characters, got {len}"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                if matches_pattern(pattern, s) == Some(false) {
                    v("schema.pattern", format!("{s:?} does not match the pattern {pattern}"));
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            let exclusive = |key| schema.get(key).and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min || (exclusive("exclusiveMinimum") && x == min) {
                    v("schema.minimum", format!("must be at least {min}, got {n}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max || (exclusive("exclusiveMaximum") && x == max) {
                    v("schema.maximum", format!("must be at most {max}, got {n}"));
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64).filter(|m| len < *m) {
                v("schema.min_items", format!("must have at least {min} items, got {len}"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64).filter(|m| len > *m) {
                v("schema.max_items", format!("must have at most {max} items, got {len}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, item_schema, &format!("{pointer}/{i}"), out);
                }
            }
        }
        Value::Object(map) => validate_object(map, schema, pointer, out),
        Value::Bool(_) | Value::Null => {}
    }
}

fn validate_object(map: &serde_json::Map<String, Value>, schema: &Value, pointer: &str, out: &mut Vec<Violation>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if map.get(name).is_none_or(Value::is_null) {
                out.push(Violation {
                    pointer: format!("{pointer}/{}", escape(name)),
                    code: "schema.required",
                    message: format!("required field {name:?} is missing"),
                });
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    for (name, child) in map {
        let child_pointer = format!("{pointer}/{}", escape(name));
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(child_schema), _) => validate(child, child_schema, &child_pointer, out),
            (None, Some(Value::Object(_))) => validate(child, additional.unwrap_or(&Value::Null), &child_pointer, out),
            (None, Some(Value::Bool(true))) => {}
            // A schema without properties (`type: object` alone) accepts any fields.
            (None, _) if preserve || properties.is_none() => {}
            (None, _) => {
                let known: Vec<&String> = properties.map(|p| p.keys().collect()).unwrap_or_default();
                out.push(Violation {
                    pointer: child_pointer,
                    code: "schema.unknown_field",
                    message: format!(
                        "unknown field {name:?}; known fields: {}",
                        known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
}

/// Whether `text` matches `pattern`; None when the pattern does not compile (then no check).
fn matches_pattern(pattern: &str, text: &str) -> Option<bool> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let regex = cache.entry(pattern.to_string()).or_insert_with(|| Regex::new(pattern).ok());
    regex.as_ref().map(|r| r.is_match(text))
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => "a string".into(),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value, schema: Value) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        validate(&value, &schema, "", &mut out);
        let mut found: Vec<(String, &'static str)> = out.into_iter().map(|v| (v.pointer, v.code)).collect();
        found.sort();
        found
    }

    #[test]
    fn types_required_enum_pattern_bounds() {
        let schema = json!({"type": "object", "required": ["role"], "properties": {
            "role": {"type": "string", "enum": ["spine", "leaf"]},
            "asn": {"type": "integer", "minimum": 1, "maximum": 10},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "ports": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
            "any": {"type": "object"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }});
        assert!(check(
            json!({"role": "spine", "asn": 5, "name": "ab", "ports": ["a"], "any": {"x": 1}, "labels": {"a": "b"}}),
            schema.clone()
        )
        .is_empty());
        assert_eq!(
            check(json!({"asn": 11, "name": "AB", "ports": ["a", 2], "labels": {"a": 1}, "typo": 1}), schema.clone()),
            vec![
                ("/asn".to_string(), "schema.maximum"),
                ("/labels/a".to_string(), "schema.type"),
                ("/name".to_string(), "schema.pattern"),
                ("/ports".to_string(), "schema.max_items"),
                ("/ports/1".to_string(), "schema.type"),
                ("/role".to_string(), "schema.required"),
                ("/typo".to_string(), "schema.unknown_field"),
            ]
        );
        assert_eq!(check(json!({"role": "core"}), schema), vec![("/role".to_string(), "schema.enum")]);
    }

    #[test]
    fn int_or_string_and_preserved_fields() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
            "port": {"x-kubernetes-int-or-string": true, "type": "string"}}});
        assert!(check(json!({"port": 80, "free": {"x": 1}}), schema.clone()).is_empty());
        assert!(check(json!({"port": "http"}), schema).is_empty());
    }
}
