//! Edits of a fabric's sources, made so that a commit's diff shows only what changed.
//!
//! - An existing object is edited where it lives (its file and document). A change of scalar
//!   values is made in place on their lines, keeping the layout, quoting and comments of the
//!   document; any other change rewrites that one document (its leading and trailing comments
//!   kept). The other documents of the file are never touched.
//! - A new object goes to a file of its own where the layout puts it (`<kind-plural>/<name>.yaml`,
//!   HNP's `managed/<kind-plural>/<name>.yaml`), or is appended to that file if it exists.
//! - A deleted object's document is removed; a file left without documents is removed.
//! - Every edited file is parsed again: its objects must be exactly the ones intended, or the
//!   edit is refused (nothing is ever written half-right). No timestamps, no generated headers:
//!   the same change twice gives the same files.
//!
//! Pure: file texts in, file texts out. Validation of the resulting fabric (as a pull would) is
//! the caller's next step.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter};

use std::sync::Arc;

use crate::manifest::cache::ParseCache;
use crate::manifest::yaml::{self as y, Position};
use crate::manifest::{self, KindRegistry, Object, Options, ParsedFile, Severity, SourceFile};
use crate::vocab::Layout;
use crate::ResourceKey;

/// One change to a fabric's objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or replace the whole object (as a client sends it; `status` is never written).
    Upsert(Value),
    Delete(ResourceKey),
}

/// A file's content before and after; None: the file does not exist (then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// Change `index` is not an object this fabric can hold; `message` says why.
    Invalid { index: usize, message: String },
    /// A delete of an object the sources do not hold.
    NotFound(ResourceKey),
    /// Two changes of one request name the same object.
    Repeated(ResourceKey),
    /// The file cannot be edited safely (its documents could not be told apart, or the edit
    /// did not parse back to what was intended).
    Unsupported { path: String, message: String },
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Invalid { index, message } => write!(f, "changes[{index}]: {message}"),
            EditError::NotFound(key) => write!(f, "{key} is not in the fabric's sources"),
            EditError::Repeated(key) => write!(f, "{key} is changed twice in one request"),
            EditError::Unsupported { path, message } => write!(f, "{path} cannot be edited in place: {message}"),
        }
    }
}

impl std::error::Error for EditError {}

/// Where the sources live and how new files are named.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The GitOps directory, relative to the repository root ("" = the root).
    pub dir: &'a str,
    pub layout: Layout,
}

impl Placement<'_> {
    /// The file a new object goes to.
    pub fn path_of(&self, plural: &str, name: &str) -> String {
        let managed = if self.layout == Layout::Hnp { "managed/" } else { "" };
        let dir = if self.dir.is_empty() { String::new() } else { format!("{}/", self.dir) };
        format!("{dir}{managed}{plural}/{name}.yaml")
    }
}

/// The working set of files: their current texts, changed as edits go, and where each object is.
struct Files<'a> {
    registry: &'a KindRegistry,
    options: &'a Options,
    cache: &'a ParseCache,
    texts: BTreeMap<String, Option<String>>,
    before: BTreeMap<String, Option<String>>,
    /// key -> (path, content hash)
    index: HashMap<ResourceKey, (String, String)>,
}

impl<'a> Files<'a> {
    fn new(
        sources: &[SourceFile],
        registry: &'a KindRegistry,
        options: &'a Options,
        cache: &'a ParseCache,
    ) -> Files<'a> {
        let texts: BTreeMap<String, Option<String>> =
            sources.iter().map(|f| (f.path.clone(), std::str::from_utf8(&f.bytes).ok().map(str::to_owned))).collect();
        let mut files = Files { registry, options, cache, before: texts.clone(), texts, index: HashMap::new() };
        for source in sources {
            for object in &cache.parse(source, registry, options).objects {
                files.index.insert(object.key(), (source.path.clone(), object.hash.clone()));
            }
        }
        files
    }

    fn parse(&self, path: &str, text: &str) -> Arc<ParsedFile> {
        let file = SourceFile { path: path.to_owned(), bytes: text.as_bytes().to_vec() };
        self.cache.parse(&file, self.registry, self.options)
    }

    fn text(&self, path: &str) -> Option<String> {
        self.texts.get(path).cloned().flatten()
    }

    /// The object with `key`, where it is: (path, text, object).
    fn find(&self, key: &ResourceKey) -> Option<(String, String, Object)> {
        let (path, _) = self.index.get(key)?;
        let text = self.text(path)?;
        let object = self.parse(path, &text).objects.iter().find(|o| &o.key() == key)?.clone();
        Some((path.clone(), text, object))
    }

    /// (key, hash) of the objects in `path` now.
    fn objects_of(&self, path: &str) -> BTreeMap<ResourceKey, String> {
        self.index.iter().filter(|(_, (p, _))| p == path).map(|(k, (_, h))| (k.clone(), h.clone())).collect()
    }

    /// Sets `path` to `after` if it then parses (no YAML error) to exactly `expected` (key ->
    /// hash): anything else is refused and nothing changes.
    fn set(
        &mut self,
        path: &str,
        after: Option<String>,
        expected: BTreeMap<ResourceKey, String>,
    ) -> Result<(), String> {
        if let Some(text) = &after {
            let parsed = self.parse(path, text);
            let broken =
                parsed.diagnostics.iter().find(|d| d.severity == Severity::Error && d.code.starts_with("yaml."));
            if let Some(e) = broken {
                return Err(format!("the edit would not parse: {}", e.message));
            }
            let found: BTreeMap<ResourceKey, String> =
                parsed.objects.iter().map(|o| (o.key(), o.hash.clone())).collect();
            if found != expected {
                return Err("the edited file does not parse back to the intended objects".into());
            }
        } else if !expected.is_empty() {
            return Err("the file would be removed with objects still in it".into());
        }
        self.index.retain(|_, (p, _)| p != path);
        for (key, hash) in expected {
            self.index.insert(key, (path.to_owned(), hash));
        }
        self.texts.insert(path.to_owned(), after);
        Ok(())
    }

    fn edits(self) -> Vec<FileEdit> {
        let before = self.before;
        self.texts
            .into_iter()
            .filter_map(|(path, after)| {
                let was = before.get(&path).cloned().flatten();
                (was != after).then_some(FileEdit { path, before: was, after })
            })
            .collect()
    }
}

/// What an edit works on: the files a pull of the fabric reads, how to parse them, where new
/// files go.
pub struct Inputs<'a> {
    pub files: &'a [SourceFile],
    pub placement: Placement<'a>,
    pub registry: &'a KindRegistry,
    pub options: &'a Options,
    pub cache: &'a ParseCache,
}

/// Applies `changes` to the sources, in order.
pub fn apply_changes(sources: &Inputs<'_>, changes: &[Change]) -> Result<Vec<FileEdit>, EditError> {
    let placement = sources.placement;
    let mut files = Files::new(sources.files, sources.registry, sources.options, sources.cache);
    let mut seen = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let key = match change {
            Change::Upsert(value) => upsert(&mut files, index, value, placement)?,
            Change::Delete(key) => {
                delete(&mut files, key)?;
                key.clone()
            }
        };
        if seen.contains(&key) {
            return Err(EditError::Repeated(key));
        }
        seen.push(key);
    }
    Ok(files.edits())
}

/// The object a client sent, parsed and normalized as a pull would.
fn incoming(index: usize, value: &Value, registry: &KindRegistry, options: &Options) -> Result<Object, EditError> {
    let invalid = |message: String| EditError::Invalid { index, message };
    if !value.is_object() {
        return Err(invalid("must be a Kubernetes object (a mapping)".into()));
    }
    let text = emit(&without_status(value));
    let file = SourceFile { path: format!("changes[{index}]"), bytes: text.into_bytes() };
    let mut parsed = manifest::parse_file(&file, registry, options);
    if let Some(first) = parsed.diagnostics.iter().find(|d| d.severity == Severity::Error) {
        let at = if first.field_path.is_empty() { String::new() } else { format!("{}: ", first.field_path) };
        return Err(invalid(format!("{at}{}", first.message)));
    }
    match parsed.objects.pop() {
        Some(object) => Ok(object),
        None => Err(invalid("is not an object of a fabric kind".into())),
    }
}

fn without_status(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    value
}

fn upsert(
    files: &mut Files<'_>,
    index: usize,
    value: &Value,
    placement: Placement<'_>,
) -> Result<ResourceKey, EditError> {
    let new = incoming(index, value, files.registry, files.options)?;
    let key = new.key();
    let unsupported = |path: &str, message: String| EditError::Unsupported { path: path.to_owned(), message };
    let document = emit(&without_status(value));
    match files.find(&key) {
        Some((_, _, old)) if old.hash == new.hash => {}
        Some((path, text, old)) => {
            let mut expected = files.objects_of(&path);
            expected.insert(key.clone(), new.hash.clone());
            // Scalars in place when that is all that changed and it parses back right; else the
            // whole document.
            let patched = scalar_changes(&old.body, &new.body).and_then(|changes| patch_scalars(&text, &old, &changes));
            let in_place = patched.is_some_and(|patched| files.set(&path, Some(patched), expected.clone()).is_ok());
            if !in_place {
                let rewritten = replace_document(&text, old.document, &document, files.options)
                    .map_err(|m| unsupported(&path, m))?;
                files.set(&path, Some(rewritten), expected).map_err(|m| unsupported(&path, m))?;
            }
        }
        None => {
            let def = files.registry.of_key(&key, &new.version).ok_or_else(|| EditError::Invalid {
                index,
                message: format!("{} is not a kind of the registry", key.kind),
            })?;
            let path = placement.path_of(&def.plural, &key.name);
            let mut expected = files.objects_of(&path);
            expected.insert(key.clone(), new.hash.clone());
            let after = match files.text(&path) {
                Some(text) if has_content(&lines(&text)) => {
                    let newline = if text.ends_with('\n') { "" } else { "\n" };
                    format!("{text}{newline}---\n{document}\n")
                }
                _ => format!("{document}\n"),
            };
            files.set(&path, Some(after), expected).map_err(|m| unsupported(&path, m))?;
        }
    }
    Ok(key)
}

fn delete(files: &mut Files<'_>, key: &ResourceKey) -> Result<(), EditError> {
    let Some((path, text, old)) = files.find(key) else { return Err(EditError::NotFound(key.clone())) };
    let unsupported = |message: String| EditError::Unsupported { path: path.clone(), message };
    let mut expected = files.objects_of(&path);
    expected.remove(key);
    let after = remove_document(&text, old.document, files.options).map_err(unsupported)?;
    // A file left with comments only goes too.
    let after = has_content(&lines(&after)).then_some(after);
    files.set(&path, after, expected).map_err(unsupported)
}

/// Where HNP archives what it ingested: hidden, so pulls never read it.
pub const ARCHIVE_DIR: &str = ".hnp/archive";

/// HNP's ingest: the objects of the files in the GitOps directory's `raw/` move to one file each
/// in the managed layout (`managed/<kind-plural>/<name>.yaml`, their documents' text kept), and
/// each raw file is removed, or with `archive` moved under `.hnp/archive/`. A raw file without
/// objects stays; one that mixes objects with other documents is refused (they would be lost).
pub fn ingest_raw(sources: &Inputs<'_>, archive: bool) -> Result<Vec<FileEdit>, EditError> {
    let mut files = Files::new(sources.files, sources.registry, sources.options, sources.cache);
    let base = if sources.placement.dir.is_empty() { String::new() } else { format!("{}/", sources.placement.dir) };
    let managed = Placement { dir: sources.placement.dir, layout: Layout::Hnp };
    let raw_prefix = format!("{base}raw/");
    for source in sources.files.iter().filter(|f| f.path.starts_with(&raw_prefix)) {
        let unsupported = |message: String| EditError::Unsupported { path: source.path.clone(), message };
        let Some(text) = files.text(&source.path) else { continue };
        let parsed = files.parse(&source.path, &text);
        if parsed.objects.is_empty() {
            continue;
        }
        let documents = documents(&text).iter().filter(|d| has_content(&lines(&text)[(*d).clone()])).count();
        if documents != parsed.objects.len() {
            return Err(unsupported(format!(
                "holds {documents} documents of which {} are valid fabric objects; fix or move the others first",
                parsed.objects.len()
            )));
        }
        for object in &parsed.objects {
            let key = object.key();
            let def = sources
                .registry
                .of_key(&key, &object.version)
                .ok_or_else(|| unsupported(format!("{key}: unknown kind")))?;
            let path = managed.path_of(&def.plural, &key.name);
            let range = document(&text, object.document, sources.options).map_err(&unsupported)?;
            let all = lines(&text);
            let body: String = all[range].iter().filter(|l| !is_separator(l)).copied().collect();
            let mut expected = files.objects_of(&path);
            expected.insert(key.clone(), object.hash.clone());
            let after = match files.text(&path) {
                Some(existing) if has_content(&lines(&existing)) => {
                    let newline = if existing.ends_with('\n') { "" } else { "\n" };
                    format!("{existing}{newline}---\n{}", body.trim_start_matches('\n'))
                }
                _ => body.trim_start_matches('\n').to_owned(),
            };
            files
                .set(&path, Some(after), expected)
                .map_err(|m| EditError::Unsupported { path: path.clone(), message: m })?;
        }
        if archive {
            let rest = &source.path[base.len()..];
            files.texts.insert(format!("{base}{ARCHIVE_DIR}/{rest}"), Some(text.clone()));
        }
        files.set(&source.path, None, BTreeMap::new()).map_err(&unsupported)?;
    }
    Ok(files.edits())
}

/// An object of a version the fabric's CRDs no longer serve, and what migrating it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub file: String,
    pub document: usize,
    pub from: String,
    /// The apiVersion it was rewritten to; None when it validates under no served version.
    pub to: Option<String>,
    /// Why it could not be migrated (the first error under the newest served version).
    pub reason: String,
}

/// Rewrites the apiVersion line of every object whose version is no longer served to a served
/// version it validates under (the newest first); nothing else in the files changes.
pub fn migrate_versions(sources: &Inputs<'_>) -> (Vec<FileEdit>, Vec<Migration>) {
    let mut files = Files::new(sources.files, sources.registry, sources.options, sources.cache);
    let mut migrations = Vec::new();
    for source in sources.files {
        let Some(mut text) = files.text(&source.path) else { continue };
        let unserved: Vec<usize> = files
            .parse(&source.path, &text)
            .diagnostics
            .iter()
            .filter(|d| d.code == "version.unserved")
            .filter_map(|d| d.document)
            .collect();
        let Ok(docs) = y::parse(&text, &sources.options.yaml_limits()) else { continue };
        for index in unserved {
            let Some(doc) = docs.iter().find(|d| d.index == index) else { continue };
            let (Some(from), Some(kind), Some(at)) = (
                doc.value.get("apiVersion").and_then(Value::as_str),
                doc.value.get("kind").and_then(Value::as_str),
                doc.positions.get("/apiVersion"),
            ) else {
                continue;
            };
            let group = from.split_once('/').map_or("", |(g, _)| g);
            let mut served = sources.registry.versions_of(group, kind);
            served.reverse();
            let mut outcome = Migration {
                file: source.path.clone(),
                document: index,
                from: from.to_owned(),
                to: None,
                reason: String::new(),
            };
            for version in served {
                let to = format!("{group}/{version}");
                let Some(patched) = patch_at(&text, at, &Value::String(to.clone())) else { continue };
                let parsed = files.parse(&source.path, &patched);
                let errors: Vec<&manifest::Diagnostic> = parsed
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error && d.document == Some(index))
                    .collect();
                match errors.first() {
                    None => {
                        text = patched;
                        outcome.to = Some(to);
                        break;
                    }
                    Some(first) if outcome.reason.is_empty() => {
                        outcome.reason = format!("under {to}: {} {}", first.field_path, first.message)
                    }
                    Some(_) => {}
                }
            }
            migrations.push(outcome);
        }
        files.texts.insert(source.path.clone(), Some(text));
    }
    (files.edits(), migrations)
}

impl FileEdit {
    /// The edit as a unified diff (3 lines of context), `a/` and `b/` prefixed like git's.
    pub fn unified(&self) -> String {
        let (before, after) = (self.before.as_deref().unwrap_or_default(), self.after.as_deref().unwrap_or_default());
        let old = if self.before.is_some() { format!("a/{}", self.path) } else { "/dev/null".into() };
        let new = if self.after.is_some() { format!("b/{}", self.path) } else { "/dev/null".into() };
        similar::TextDiff::from_lines(before, after).unified_diff().context_radius(3).header(&old, &new).to_string()
    }
}

// ---- documents and lines ----

fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#') && !t.starts_with('%') && !is_separator(line)
}

fn has_content(lines: &[&str]) -> bool {
    lines.iter().any(|l| is_content(l))
}

/// The line ranges of a text's YAML documents, in the order the parser numbers them: each
/// separator starts one; what comes before the first is one only if it holds content.
fn documents(text: &str) -> Vec<std::ops::Range<usize>> {
    let all = lines(text);
    let starts: Vec<usize> = all.iter().enumerate().filter(|(_, l)| is_separator(l)).map(|(i, _)| i).collect();
    let mut ranges = Vec::new();
    let first = starts.first().copied().unwrap_or(all.len());
    if has_content(&all[..first]) {
        ranges.push(0..first);
    }
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(all.len());
        ranges.push(start..end);
    }
    ranges
}

/// The range of document `index`, checked against the parser's count of documents.
fn document(text: &str, index: usize, options: &Options) -> Result<std::ops::Range<usize>, String> {
    let ranges = documents(text);
    let parsed = y::parse(text, &options.yaml_limits()).map_err(|e| e.message)?.len();
    if ranges.len() != parsed {
        return Err(format!("found {} document separators for {parsed} documents", ranges.len()));
    }
    ranges.get(index).cloned().ok_or_else(|| format!("no document {index}"))
}

/// Replaces the content of document `index` (not its separator, leading or trailing comments).
fn replace_document(text: &str, index: usize, new: &str, options: &Options) -> Result<String, String> {
    let range = document(text, index, options)?;
    let all = lines(text);
    let content: Vec<usize> = range.clone().filter(|&i| is_content(all[i])).collect();
    let (Some(&first), Some(&last)) = (content.first(), content.last()) else {
        return Err(format!("document {index} is empty"));
    };
    let mut out: String = all[..first].concat();
    out.push_str(new);
    out.push('\n');
    out.push_str(&all[last + 1..].concat());
    Ok(out)
}

fn remove_document(text: &str, index: usize, options: &Options) -> Result<String, String> {
    let range = document(text, index, options)?;
    let all = lines(text);
    // The first document of a file without a leading separator starts at line 0: the file's
    // header comments above its content stay.
    let start = if range.start == 0 { range.clone().find(|&i| is_content(all[i])).unwrap_or(0) } else { range.start };
    Ok(format!("{}{}", all[..start].concat(), all[range.end..].concat()))
}

// ---- scalars in place ----

/// The pointers whose scalar value changes, if that is all that changes (same keys, same list
/// lengths, same types of containers).
fn scalar_changes(old: &Value, new: &Value) -> Option<Vec<(String, Value)>> {
    fn walk(pointer: &str, old: &Value, new: &Value, out: &mut Vec<(String, Value)>) -> Option<()> {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                if a.len() != b.len() || a.keys().any(|k| !b.contains_key(k)) {
                    return None;
                }
                for (k, v) in a {
                    walk(&format!("{pointer}/{}", y::escape(k)), v, &b[k], out)?;
                }
                Some(())
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    return None;
                }
                for (i, (x, z)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{pointer}/{i}"), x, z, out)?;
                }
                Some(())
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => None,
            (a, b) if a == b => Some(()),
            (_, b) => {
                out.push((pointer.to_owned(), b.clone()));
                Some(())
            }
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out)?;
    Some(out)
}

/// `text` with each pointer's scalar (where `object`'s document has it) replaced in place.
fn patch_scalars(text: &str, object: &Object, changes: &[(String, Value)]) -> Option<String> {
    // Right to left within a line, so earlier columns stay valid.
    let mut spots: Vec<(Position, &Value)> =
        changes.iter().map(|(p, v)| Some((object.positions.get(p)?, v))).collect::<Option<_>>()?;
    spots.sort_by_key(|(at, _)| std::cmp::Reverse((at.line, at.column)));
    spots.into_iter().try_fold(text.to_owned(), |text, (at, value)| patch_at(&text, at, value))
}

/// `text` with the scalar token at `at` replaced by `value`.
fn patch_at(text: &str, at: Position, value: &Value) -> Option<String> {
    let mut all: Vec<String> = lines(text).into_iter().map(str::to_owned).collect();
    let line = all.get_mut((at.line as usize).checked_sub(1)?)?;
    let start = line.char_indices().nth((at.column as usize).checked_sub(1)?)?.0;
    let end = start + scalar_len(&line[start..])?;
    line.replace_range(start..end, &emit(value));
    Some(all.concat())
}

/// The byte length of the scalar token at the start of `rest` (quoted or plain, on one line);
/// None for what is not safe to replace (block scalars, anchors, aliases, tags).
fn scalar_len(rest: &str) -> Option<usize> {
    let line = rest.trim_end_matches(['\n', '\r']);
    let mut chars = line.char_indices();
    match chars.next()?.1 {
        '|' | '>' | '&' | '*' | '!' => None,
        '"' => {
            let mut escaped = false;
            for (i, c) in chars {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => return Some(i + 1),
                    _ => {}
                }
            }
            None
        }
        '\'' => {
            let bytes = line.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some(i + 1);
                }
                i += 1;
            }
            None
        }
        _ => {
            // A plain scalar ends at a comment, or at a flow indicator inside [...] / {...}.
            let end = line.find(" #").unwrap_or(line.len());
            let end = line[..end].find([',', ']', '}']).unwrap_or(end);
            Some(line[..end].trim_end().len())
        }
    }
}

// ---- YAML text ----

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// `value` as YAML text, without a document marker or final newline. Keys come in serde_json's
/// (sorted) order, which puts apiVersion, kind, metadata and spec first, as people write them.
pub fn emit(value: &Value) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; an empty result would fail the parse-back check.
    let _ = YamlEmitter::new(&mut out).dump(&to_yaml(value));
    out.strip_prefix("---\n").or_else(|| out.strip_prefix("---")).unwrap_or(&out).trim_start_matches(' ').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADER: &str = "# Managed by the Hedgehog NetBox Plugin. Edit in NetBox.\n";
    const SWITCH: &str = "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Switch\nmetadata:\n  name: leaf-1\n  # the rack's first\nspec:\n  role: server-leaf  # as racked\n  description: \"first leaf\"\n  asn: 65101\n";
    const SERVER: &str = "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: srv-1\nspec:\n  description: compute\n";

    fn sources(files: &[(&str, &str)]) -> Vec<SourceFile> {
        files.iter().map(|(p, t)| SourceFile { path: p.to_string(), bytes: t.as_bytes().to_vec() }).collect()
    }

    fn apply(files: &[(&str, &str)], changes: &[Change], layout: Layout) -> Result<Vec<FileEdit>, EditError> {
        let (files, options, cache) = (sources(files), Options::default(), ParseCache::default());
        let sources = Inputs {
            files: &files,
            placement: Placement { dir: "fabric", layout },
            registry: KindRegistry::hedgehog(),
            options: &options,
            cache: &cache,
        };
        apply_changes(&sources, changes)
    }

    fn switch(description: &str, role: &str) -> Value {
        json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Switch",
               "metadata": {"name": "leaf-1"},
               "spec": {"role": role, "description": description, "asn": 65101}})
    }

    fn key(kind: &str, name: &str) -> ResourceKey {
        ResourceKey::new("wiring.githedgehog.com", kind, "default", name)
    }

    #[test]
    fn a_changed_scalar_is_changed_on_its_line_only() {
        let text = format!("{HEADER}{SWITCH}---\n{SERVER}");
        let edits = apply(
            &[("fabric/w.yaml", &text)],
            &[Change::Upsert(switch("first leaf, row 2", "server-leaf"))],
            Layout::Plain,
        )
        .unwrap();
        assert_eq!(edits.len(), 1);
        let after = edits[0].after.as_deref().unwrap();
        assert_eq!(after, text.replace("\"first leaf\"", &emit(&json!("first leaf, row 2"))));
        let changed: Vec<(&str, &str)> = text.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(after.contains("  role: server-leaf  # as racked\n") && after.contains("  # the rack's first\n"));
    }

    #[test]
    fn the_same_change_twice_edits_nothing() {
        let text = format!("{SWITCH}---\n{SERVER}");
        let same =
            apply(&[("fabric/w.yaml", &text)], &[Change::Upsert(switch("first leaf", "server-leaf"))], Layout::Plain);
        assert_eq!(same, Ok(vec![]));
    }

    #[test]
    fn a_structural_change_rewrites_that_document_only() {
        let text = format!("{HEADER}{SWITCH}---\n{SERVER}");
        let mut value = switch("first leaf", "spine");
        value["spec"].as_object_mut().unwrap().remove("asn");
        let edits = apply(&[("fabric/w.yaml", &text)], &[Change::Upsert(value)], Layout::Plain).unwrap();
        let after = edits[0].after.as_deref().unwrap();
        assert!(after.starts_with(HEADER), "{after}");
        assert!(after.ends_with(&format!("---\n{SERVER}")), "{after}");
        assert!(!after.contains("asn") && after.contains("role: spine"), "{after}");
    }

    #[test]
    fn new_objects_go_where_the_layout_puts_them() {
        let server = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Server",
                            "metadata": {"name": "srv-2"}, "spec": {"description": "more"}});
        let plain = apply(&[("fabric/w.yaml", SWITCH)], &[Change::Upsert(server.clone())], Layout::Plain).unwrap();
        assert_eq!(plain[0].path, "fabric/servers/srv-2.yaml");
        assert_eq!(plain[0].before, None);
        let hnp =
            apply(&[("fabric/managed/switches/leaf-1.yaml", SWITCH)], &[Change::Upsert(server)], Layout::Hnp).unwrap();
        assert_eq!(hnp[0].path, "fabric/managed/servers/srv-2.yaml");
        let text = hnp[0].after.as_deref().unwrap();
        assert!(text.starts_with("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n"), "{text}");
    }

    #[test]
    fn a_delete_removes_the_document_and_an_emptied_file() {
        let text = format!("{SWITCH}---\n{SERVER}");
        let edits = apply(
            &[("fabric/w.yaml", &text), ("fabric/s.yaml", SERVER.replace("srv-1", "srv-9").as_str())],
            &[Change::Delete(key("Server", "srv-1")), Change::Delete(key("Server", "srv-9"))],
            Layout::Plain,
        )
        .unwrap();
        assert_eq!(edits.len(), 2);
        assert_eq!((edits[0].path.as_str(), edits[0].after.as_deref()), ("fabric/s.yaml", None));
        assert_eq!(edits[1].after.as_deref(), Some(SWITCH));
        // Deleting a file's first object keeps the file's header comment.
        let headed = format!("{HEADER}{SWITCH}---\n{SERVER}");
        let edits =
            apply(&[("fabric/w.yaml", &headed)], &[Change::Delete(key("Switch", "leaf-1"))], Layout::Plain).unwrap();
        assert_eq!(edits[0].after.as_deref(), Some(format!("{HEADER}---\n{SERVER}").as_str()));
        assert_eq!(
            apply(&[("fabric/w.yaml", &text)], &[Change::Delete(key("Server", "nope"))], Layout::Plain),
            Err(EditError::NotFound(key("Server", "nope")))
        );
    }

    #[test]
    fn bad_changes_are_named() {
        let bad = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Switch",
                         "metadata": {"name": "leaf-2"}, "spec": {"role": "not-a-role"}});
        match apply(&[("fabric/w.yaml", SWITCH)], &[Change::Upsert(json!("x")), Change::Upsert(bad)], Layout::Plain) {
            Err(EditError::Invalid { index: 0, .. }) => {}
            other => panic!("{other:?}"),
        }
        let bad = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Switch",
                         "metadata": {"name": "leaf-2"}, "spec": {"role": "not-a-role"}});
        match apply(&[("fabric/w.yaml", SWITCH)], &[Change::Upsert(bad)], Layout::Plain) {
            Err(EditError::Invalid { index: 0, message }) => assert!(message.starts_with("/spec/role"), "{message}"),
            other => panic!("{other:?}"),
        }
        let twice = [Change::Delete(key("Switch", "leaf-1")), Change::Upsert(switch("x", "spine"))];
        assert_eq!(
            apply(&[("fabric/w.yaml", SWITCH)], &twice, Layout::Plain),
            Err(EditError::Repeated(key("Switch", "leaf-1")))
        );
    }

    #[test]
    fn a_version_migration_touches_the_apiversion_lines_only() {
        let old = |name: &str| SERVER.replace("v1beta1", "v1alpha2").replace("srv-1", name);
        let bad = old("srv-3").replace("  description: compute\n", "  colour: red\n");
        let text = format!("{HEADER}{}---\n{SWITCH}---\n{}---\n{bad}", old("srv-1"), old("srv-2"));
        let (files, options, cache) = (sources(&[("fabric/w.yaml", &text)]), Options::default(), ParseCache::default());
        let sources = Inputs {
            files: &files,
            placement: Placement { dir: "fabric", layout: Layout::Plain },
            registry: KindRegistry::hedgehog(),
            options: &options,
            cache: &cache,
        };
        let (edits, migrations) = migrate_versions(&sources);
        let after = edits[0].after.as_deref().unwrap();
        let changed: Vec<(&str, &str)> = text.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
        let line = ("apiVersion: wiring.githedgehog.com/v1alpha2", "apiVersion: wiring.githedgehog.com/v1beta1");
        assert_eq!(changed, vec![line, line]);
        let to: Vec<Option<&str>> = migrations.iter().map(|m| m.to.as_deref()).collect();
        assert_eq!(to, vec![Some("wiring.githedgehog.com/v1beta1"), Some("wiring.githedgehog.com/v1beta1"), None]);
        assert!(migrations[2].reason.contains("/spec/colour"), "{:?}", migrations[2]);
        assert_eq!(
            migrate_versions(&Inputs { files: &super::tests::sources(&[("fabric/w.yaml", after)]), ..sources }).0,
            vec![]
        );
    }

    #[test]
    fn ingesting_raw_moves_each_object_to_its_own_managed_file() {
        let raw = format!("# dropped here by hand\n{SWITCH}---\n# the first server\n{SERVER}");
        let (files, options, cache) = (
            sources(&[("fabric/raw/wiring.yaml", &raw), ("fabric/raw/notes.yaml", "owner: netops\n")]),
            Options::default(),
            ParseCache::default(),
        );
        let sources = Inputs {
            files: &files,
            placement: Placement { dir: "fabric", layout: Layout::Hnp },
            registry: KindRegistry::hedgehog(),
            options: &options,
            cache: &cache,
        };
        let edits = ingest_raw(&sources, true).unwrap();
        let paths: Vec<(&str, bool)> = edits.iter().map(|e| (e.path.as_str(), e.after.is_some())).collect();
        assert_eq!(
            paths,
            [
                ("fabric/.hnp/archive/raw/wiring.yaml", true),
                ("fabric/managed/servers/srv-1.yaml", true),
                ("fabric/managed/switches/leaf-1.yaml", true),
                ("fabric/raw/wiring.yaml", false)
            ]
        );
        assert_eq!(edits[1].after.as_deref(), Some(format!("# the first server\n{SERVER}").as_str()));
        assert_eq!(edits[0].after.as_deref(), Some(raw.as_str()));
        let mixed = super::tests::sources(&[("fabric/raw/mixed.yaml", &format!("{SWITCH}---\nowner: netops\n"))]);
        let err = ingest_raw(&Inputs { files: &mixed, ..sources }, false).unwrap_err();
        assert!(matches!(err, EditError::Unsupported { ref path, .. } if path == "fabric/raw/mixed.yaml"), "{err:?}");
    }

    #[test]
    fn an_edit_reads_as_a_unified_diff() {
        let edit = FileEdit {
            path: "f/a.yaml".into(),
            before: Some("a: 1\nb: 2\n".into()),
            after: Some("a: 1\nb: 3\n".into()),
        };
        assert_eq!(edit.unified(), "--- a/f/a.yaml\n+++ b/f/a.yaml\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n");
        let created = FileEdit { before: None, ..edit };
        assert!(created.unified().starts_with("--- /dev/null\n+++ b/f/a.yaml\n"));
    }

    #[test]
    fn documents_are_told_apart_as_the_parser_numbers_them() {
        assert_eq!(documents("# c\n---\na: 1\n---\nb: 2\n"), vec![1..3, 3..5]);
        assert_eq!(documents("a: 1\n---\nb: 2\n---\n"), vec![0..1, 1..3, 3..4]);
        assert_eq!(scalar_len("\"a \\\" b\" # c\n"), Some(8));
        assert_eq!(scalar_len("'it''s' x"), Some(7));
        assert_eq!(scalar_len("plain text  # note\n"), Some(10));
        assert_eq!(scalar_len("a, b]"), Some(1));
        assert_eq!(scalar_len("|\n"), None);
    }
}
