//! The pure core of a pull: YAML sources -> classified, validated, normalized objects.
//! No I/O: callers hand in file contents and get objects and diagnostics back.

pub mod cache;
pub mod generate;
pub mod kinds;
pub mod schema;
pub mod semantics;
pub mod yaml;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ResourceKey;

pub use kinds::{KindDef, KindRegistry};
pub use semantics::{fabric_findings, validate_fabric};
pub use yaml::Positions;

/// Bump when parsing, validation or normalization changes what a source yields: stored states
/// pulled by an older version are then re-read instead of taken as up to date.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A finding about one place in the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable dotted code, e.g. "schema.required", "ref.unresolved".
    pub code: String,
    pub file: String,
    /// Zero-based document index in the file; None for the whole file.
    pub document: Option<usize>,
    /// JSON pointer inside the document; "" for the document itself.
    pub field_path: String,
    /// One-based; 0 when unknown.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// One desired object, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub document: usize,
    /// One-based line where the document starts.
    pub line: u32,
    pub body: Value,
    /// Lower-case hex SHA-256 of the canonical JSON of `body`.
    pub hash: String,
    pub positions: Positions,
}

/// A file read from the repository: its repo-relative path and its bytes, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl Object {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.group, &self.kind, &self.namespace, &self.name)
    }

    /// A diagnostic about `pointer` in this object, positioned where the source has it.
    pub fn diagnostic(&self, severity: Severity, code: &str, pointer: &str, message: String) -> Diagnostic {
        let at = self.positions.find(pointer).unwrap_or(yaml::Position { line: self.line, column: 0 });
        Diagnostic {
            severity,
            code: code.into(),
            file: self.file.clone(),
            document: Some(self.document),
            field_path: pointer.into(),
            line: at.line,
            column: at.column,
            message,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of objects that name none (Hedgehog kinds are namespaced).
    pub default_namespace: String,
    /// Nodes produced by alias expansion per file.
    pub max_alias_expansions: usize,
    pub max_depth: usize,
    pub max_documents_per_file: usize,
}

impl Options {
    pub fn yaml_limits(&self) -> yaml::Limits {
        yaml::Limits {
            max_alias_nodes: self.max_alias_expansions,
            max_depth: self.max_depth,
            max_documents: self.max_documents_per_file,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_namespace: "default".into(),
            max_alias_expansions: 10_000,
            max_depth: 64,
            max_documents_per_file: 10_000,
        }
    }
}

/// Objects and findings of one file.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub objects: Vec<Object>,
    pub diagnostics: Vec<Diagnostic>,
    /// Documents of kinds this service does not manage.
    pub ignored: usize,
}

/// Groups whose kinds this service manages: an unknown kind in them is an error, not ignored.
const MANAGED_GROUPS: &[&str] = &["wiring.githedgehog.com", "vpc.githedgehog.com"];
/// Top-level fields that are not part of the schema check.
const ENVELOPE: &[&str] = &["apiVersion", "kind", "metadata", "status"];
/// Annotations clients add that do not belong to the desired state.
const DROPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Parses one file: encoding, YAML, classification, policy, schema, names; then normalizes.
pub fn parse_file(file: &SourceFile, registry: &KindRegistry, options: &Options) -> ParsedFile {
    let mut out = ParsedFile::default();
    let whole_file = |code: &str, line: u32, column: u32, message: String| Diagnostic {
        severity: Severity::Error,
        code: code.into(),
        file: file.path.clone(),
        document: None,
        field_path: String::new(),
        line,
        column,
        message,
    };
    let text = match std::str::from_utf8(&file.bytes) {
        Ok(text) => text,
        Err(e) => {
            let before = &file.bytes[..e.valid_up_to()];
            let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
            let column = (before.len() - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1)) as u32 + 1;
            let message = format!("not valid UTF-8 (byte {} of the file); YAML files must be UTF-8", e.valid_up_to());
            out.diagnostics.push(whole_file("yaml.encoding", line, column, message));
            return out;
        }
    };
    let docs = match yaml::parse(text, &options.yaml_limits()) {
        Ok(docs) => docs,
        Err(e) => {
            out.diagnostics.push(Diagnostic {
                document: e.document,
                field_path: e.pointer,
                ..whole_file(e.code, e.position.line, e.position.column, e.message)
            });
            return out;
        }
    };
    for doc in docs {
        if doc.value.is_null() {
            continue;
        }
        match classify(file, &doc, registry, options) {
            Classified::Object(object) => out.objects.push(*object),
            Classified::Ignored(warning) => {
                out.ignored += 1;
                out.diagnostics.push(warning);
            }
            Classified::Invalid(errors) => out.diagnostics.extend(errors),
        }
    }
    out
}

enum Classified {
    Object(Box<Object>),
    Ignored(Diagnostic),
    Invalid(Vec<Diagnostic>),
}

fn classify(file: &SourceFile, doc: &yaml::Document, registry: &KindRegistry, options: &Options) -> Classified {
    let start = doc.positions.find("").unwrap_or_default();
    let at = |severity, code: &str, pointer: &str, message: String| {
        let pos = doc.positions.find(pointer).unwrap_or(start);
        Diagnostic {
            severity,
            code: code.into(),
            file: file.path.clone(),
            document: Some(doc.index),
            field_path: pointer.into(),
            line: pos.line,
            column: pos.column,
            message,
        }
    };
    let invalid = |code: &str, pointer: &str, message: String| {
        Classified::Invalid(vec![at(Severity::Error, code, pointer, message)])
    };
    let Some(map) = doc.value.as_object() else {
        return invalid("doc.not_an_object", "", "a Kubernetes object must be a YAML mapping".into());
    };
    let absent = |field: &str| map.get(field).is_none_or(Value::is_null);
    if absent("apiVersion") && absent("kind") {
        // Tool metadata and other YAML that shares the directory (HNP's `.hnp/` files, say).
        return Classified::Ignored(at(
            Severity::Warning,
            "doc.not_kubernetes",
            "",
            "not a Kubernetes object (neither apiVersion nor kind); ignored".into(),
        ));
    }
    let (Some(api_version), Some(kind)) =
        (map.get("apiVersion").and_then(Value::as_str), map.get("kind").and_then(Value::as_str))
    else {
        let missing = if map.get("apiVersion").and_then(Value::as_str).is_none() { "/apiVersion" } else { "/kind" };
        return invalid("doc.missing_kind", missing, format!("{} must be a string", &missing[1..]));
    };
    if kind == "Secret" {
        return invalid("policy.secret", "/kind", "secrets never belong in Git; create them in the cluster".into());
    }
    let Some(def) = registry.lookup(api_version, kind) else {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        if MANAGED_GROUPS.contains(&group) {
            let served = registry.versions_of(group, kind);
            if served.is_empty() {
                return invalid("kind.unknown", "/kind", format!("{group} has no kind {kind:?}"));
            }
            let served: Vec<String> = served.iter().map(|v| format!("{group}/{v}")).collect();
            let message = format!(
                "{kind} {api_version} is no longer served; the fabric's CRDs serve {}: \
                 WriteService.MigrateVersions rewrites the object's apiVersion when it validates there",
                served.join(", ")
            );
            return invalid("version.unserved", "/apiVersion", message);
        }
        return Classified::Ignored(at(
            Severity::Warning,
            "kind.ignored",
            "",
            format!("{api_version} {kind} is not a fabric kind; ignored"),
        ));
    };

    let mut errors = Vec::new();
    let metadata = map.get("metadata").and_then(Value::as_object);
    let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    if let Err(why) = dns1123_subdomain(name) {
        errors.push(at(Severity::Error, "name.invalid", "/metadata/name", format!("metadata.name {name:?} {why}")));
    }
    let namespace = match metadata.and_then(|m| m.get("namespace")) {
        None | Some(Value::Null) => options.default_namespace.clone(),
        Some(Value::String(ns)) => ns.clone(),
        Some(_) => {
            errors.push(at(
                Severity::Error,
                "schema.type",
                "/metadata/namespace",
                "metadata.namespace must be a string".into(),
            ));
            String::new()
        }
    };
    let mut violations = Vec::new();
    let properties = def.schema.get("properties").and_then(Value::as_object);
    for (field, value) in map.iter().filter(|(k, _)| !ENVELOPE.contains(&k.as_str())) {
        match properties.and_then(|p| p.get(field)) {
            Some(field_schema) => {
                schema::validate(value, field_schema, &format!("/{}", yaml::escape(field)), &mut violations)
            }
            None => violations.push(schema::Violation {
                pointer: format!("/{}", yaml::escape(field)),
                code: "schema.unknown_field",
                message: format!("unknown top-level field {field:?} for {kind}"),
            }),
        }
    }
    for required in def.schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
    {
        if !ENVELOPE.contains(&required) && map.get(required).is_none_or(Value::is_null) {
            violations.push(schema::Violation {
                pointer: format!("/{required}"),
                code: "schema.required",
                message: format!("required field {required:?} is missing"),
            });
        }
    }
    errors.extend(violations.into_iter().map(|v| at(Severity::Error, v.code, &v.pointer, v.message)));
    if !errors.is_empty() {
        return Classified::Invalid(errors);
    }
    let body = normalize(map, &namespace);
    let hash = content_hash(&body);
    Classified::Object(Box::new(Object {
        group: def.group.clone(),
        version: def.version.clone(),
        kind: def.kind.clone(),
        namespace,
        name: name.to_string(),
        file: file.path.clone(),
        document: doc.index,
        line: start.line,
        body,
        hash,
        positions: doc.positions.clone(),
    }))
}

/// Kubernetes object names: a DNS-1123 subdomain.
pub fn dns1123_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is required");
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")
    }
}

/// The desired state of an object: what the user declares, without status, server-populated
/// metadata or nulls; namespace filled in.
pub fn normalize(object: &Map<String, Value>, namespace: &str) -> Value {
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "status" => {}
            "metadata" => {
                let mut meta = Map::new();
                let source = value.as_object();
                if let Some(name) = source.and_then(|m| m.get("name")) {
                    meta.insert("name".into(), name.clone());
                }
                meta.insert("namespace".into(), Value::String(namespace.into()));
                for field in ["labels", "annotations"] {
                    if let Some(Value::Object(entries)) = source.and_then(|m| m.get(field)) {
                        let kept: Map<String, Value> = entries
                            .iter()
                            .filter(|(k, v)| !v.is_null() && !DROPPED_ANNOTATIONS.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !kept.is_empty() {
                            meta.insert(field.into(), Value::Object(kept));
                        }
                    }
                }
                out.insert(key.clone(), Value::Object(meta));
            }
            _ => {
                if let Some(v) = without_nulls(value) {
                    out.insert(key.clone(), v);
                }
            }
        }
    }
    Value::Object(out)
}

fn without_nulls(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            Some(Value::Object(map.iter().filter_map(|(k, v)| without_nulls(v).map(|v| (k.clone(), v))).collect()))
        }
        Value::Array(items) => {
            Some(Value::Array(items.iter().map(|v| without_nulls(v).unwrap_or(Value::Null)).collect()))
        }
        other => Some(other.clone()),
    }
}

/// JSON with object keys sorted (serde_json's map is ordered by key) and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    value.to_string()
}

pub fn content_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile { path: path.into(), bytes: text.as_bytes().to_vec() }
    }

    fn parse(text: &str) -> ParsedFile {
        parse_file(&file("f.yaml", text), KindRegistry::hedgehog(), &Options::default())
    }

    fn codes(parsed: &ParsedFile) -> Vec<(String, String, u32)> {
        parsed.diagnostics.iter().map(|d| (d.code.clone(), d.field_path.clone(), d.line)).collect()
    }

    const SWITCH: &str = "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Switch\nmetadata:\n  name: leaf-1\nspec:\n  role: server-leaf\n";

    fn sample(dir: &str) -> Vec<SourceFile> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/data/samples").join(dir);
        let mut files: Vec<SourceFile> = std::fs::read_dir(&root)
            .expect("sample dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| SourceFile {
                path: p.file_name().unwrap().to_string_lossy().into(),
                bytes: std::fs::read(&p).unwrap(),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// An error as (file, document, code, pointer).
    type ErrorAt = (String, Option<usize>, String, String);

    /// Errors of a sample directory, and its object count.
    fn load_sample(dir: &str) -> (Vec<ErrorAt>, usize) {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for f in sample(dir) {
            let parsed = parse_file(&f, KindRegistry::hedgehog(), &Options::default());
            errors.extend(
                parsed
                    .diagnostics
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| (d.file, d.document, d.code, d.field_path)),
            );
            objects.extend(parsed.objects);
        }
        let semantic = validate_fabric(&objects);
        errors.extend(
            semantic
                .into_iter()
                .filter(|d| d.code != "ref.unresolved")
                .map(|d| (d.file, d.document, d.code, d.field_path)),
        );
        (errors, objects.len())
    }

    #[test]
    fn real_samples_load() {
        // demo-gitops holds VPCs and attachments whose wiring lives only in the cluster: its
        // references do not resolve in Git (a warning unless the fabric is strict), nothing else.
        assert_eq!(load_sample("demo-gitops"), (vec![], 9));
        // lab-ci's static ExternalAttachment lacks `switch` and `neighbor`, which the fixture CRD
        // (githedgehog/fabric at the pinned commit) requires: the API server would reject it too.
        let (errors, objects) = load_sample("lab-ci");
        let expected =
            |field: &str| ("wiring.yaml".to_string(), Some(50), "schema.required".to_string(), field.to_string());
        assert_eq!(errors, vec![expected("/spec/neighbor"), expected("/spec/switch")]);
        assert_eq!(objects, 50);
    }

    #[test]
    fn objects_are_classified_and_normalized() {
        let parsed =
            parse(&format!("{SWITCH}status:\n  x: 1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"));
        assert_eq!(parsed.objects.len(), 1);
        assert_eq!(parsed.ignored, 1);
        assert_eq!(codes(&parsed), vec![("kind.ignored".into(), String::new(), 10)]);
        let o = &parsed.objects[0];
        assert_eq!(
            (o.group.as_str(), o.version.as_str(), o.kind.as_str(), o.namespace.as_str(), o.name.as_str()),
            ("wiring.githedgehog.com", "v1beta1", "Switch", "default", "leaf-1")
        );
        assert_eq!(o.body.pointer("/metadata/namespace"), Some(&Value::String("default".into())));
        assert!(o.body.get("status").is_none());
        assert_eq!(o.line, 1);
    }

    #[test]
    fn hash_ignores_key_order_and_sees_value_changes() {
        let a = parse(SWITCH).objects.remove(0);
        let reordered = "kind: Switch\nspec:\n  role: server-leaf\nmetadata:\n  name: leaf-1\napiVersion: wiring.githedgehog.com/v1beta1\n";
        assert_eq!(parse(reordered).objects[0].hash, a.hash);
        assert_ne!(parse(&SWITCH.replace("server-leaf", "spine")).objects[0].hash, a.hash);
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn gateway_kinds_are_managed_like_the_rest() {
        let gateway = "apiVersion: gateway.githedgehog.com/v1alpha1\nkind: Gateway\nmetadata:\n  name: gw-1\nspec:\n  asn: 65534\n";
        let parsed = parse(gateway);
        assert_eq!(parsed.objects.len(), 1, "{:?}", parsed.diagnostics);
        assert_eq!(parsed.objects[0].key().to_string(), "Gateway.gateway.githedgehog.com/default/gw-1");
        let bad = parse(&gateway.replace("65534", "many"));
        assert_eq!(codes(&bad), [("schema.type".to_string(), "/spec/asn".to_string(), 6)]);
    }

    #[test]
    fn bad_documents_are_named_precisely() {
        let cases: Vec<(String, &str, &str, u32)> = vec![
            (SWITCH.replace("server-leaf", "core"), "schema.enum", "/spec/role", 6),
            (SWITCH.replace("  role: server-leaf\n", "  role: spine\n  asn: lots\n"), "schema.type", "/spec/asn", 7),
            (SWITCH.replace("  role: server-leaf\n", "  description: x\n"), "schema.required", "/spec/role", 6),
            (
                SWITCH.replace("  role: server-leaf\n", "  role: spine\n  colour: red\n"),
                "schema.unknown_field",
                "/spec/colour",
                7,
            ),
            (SWITCH.replace("leaf-1", "Leaf_1"), "name.invalid", "/metadata/name", 4),
            ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n".into(), "policy.secret", "/kind", 2),
            (
                "apiVersion: vpc.githedgehog.com/v1alpha9\nkind: VPC\nmetadata:\n  name: v\n".into(),
                "version.unserved",
                "/apiVersion",
                1,
            ),
            (
                "apiVersion: vpc.githedgehog.com/v1beta1\nkind: Vpc\nmetadata:\n  name: v\n".into(),
                "kind.unknown",
                "/kind",
                2,
            ),
            ("kind: Switch\napiVersion: ~\n".into(), "doc.missing_kind", "/apiVersion", 2),
            ("kind: Switch\n".into(), "doc.missing_kind", "/apiVersion", 1),
            ("- a\n- b\n".into(), "doc.not_an_object", "", 1),
            (format!("{SWITCH}  role: spine\n"), "yaml.duplicate_key", "/spec/role", 7),
        ];
        for (text, code, pointer, line) in cases {
            let parsed = parse(&text);
            assert!(parsed.objects.is_empty(), "{code}: {:?}", parsed.objects);
            let found = codes(&parsed);
            assert!(
                found.contains(&(code.to_string(), pointer.to_string(), line)),
                "{code} {pointer} {line}: {found:?}"
            );
            assert!(parsed.diagnostics.iter().all(|d| d.file == "f.yaml" && d.severity == Severity::Error));
        }
    }

    #[test]
    fn yaml_that_is_no_kubernetes_object_is_a_warning() {
        let parsed = parse("version: 1\nmanaged:\n  - switches\n---\nkind: Switch\n");
        assert_eq!(parsed.ignored, 1);
        let found: Vec<_> = parsed.diagnostics.iter().map(|d| (d.code.as_str(), d.severity, d.document)).collect();
        assert_eq!(
            found,
            vec![("doc.not_kubernetes", Severity::Warning, Some(0)), ("doc.missing_kind", Severity::Error, Some(1))]
        );
    }

    #[test]
    fn an_unserved_version_names_the_served_one() {
        let parsed = parse(&SWITCH.replace("v1beta1", "v1alpha2"));
        let d = &parsed.diagnostics[0];
        assert_eq!((d.code.as_str(), d.field_path.as_str(), d.line), ("version.unserved", "/apiVersion", 1));
        assert!(d.message.contains("serve wiring.githedgehog.com/v1beta1"), "{}", d.message);
    }

    #[test]
    fn encoding_and_alias_bombs() {
        let latin1 = SourceFile { path: "l.yaml".into(), bytes: b"a: 1\nb: caf\xe9\n".to_vec() };
        let parsed = parse_file(&latin1, KindRegistry::hedgehog(), &Options::default());
        assert_eq!(codes(&parsed), vec![("yaml.encoding".into(), String::new(), 2)]);
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
        }
        assert_eq!(parse(&bomb).diagnostics[0].code, "yaml.alias_limit");
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<Vec<u8>> =
            vec![b"\xff\xfe".to_vec(), b"\x00".to_vec(), b"---\n...\n---".to_vec(), b"kind: 5\napiVersion: 6".to_vec()];
        for seed in 0u32..200 {
            let bytes: Vec<u8> =
                (0..64u32).map(|i| b"ak: -[]{}\n ,&*!|>'\"#%@`x1"[((seed * 31 + i * 17) % 25) as usize]).collect();
            inputs.push(bytes);
        }
        for bytes in inputs {
            let _ =
                parse_file(&SourceFile { path: "g.yaml".into(), bytes }, KindRegistry::hedgehog(), &Options::default());
        }
    }
}
