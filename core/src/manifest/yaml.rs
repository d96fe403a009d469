//! Multi-document YAML to JSON values with the position of every node, guarded against
//! duplicate keys, alias bombs and deep nesting. Scalars resolve as Kubernetes reads YAML
//! (YAML 1.2 core schema: plain `true`, `null`, `12`, `1.5` are typed; quoted ones are strings).

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    fn of(mark: &Marker) -> Position {
        Position { line: mark.line() as u32, column: mark.col() as u32 + 1 }
    }
}

/// JSON pointer -> position of the node, for the nodes of one document in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(Vec<(String, Position)>);

impl Positions {
    /// The position of exactly `pointer`.
    pub fn get(&self, pointer: &str) -> Option<Position> {
        self.0.iter().find(|(k, _)| k == pointer).map(|(_, pos)| *pos)
    }

    /// The position of `pointer`, or of its nearest ancestor that has one.
    pub fn find(&self, pointer: &str) -> Option<Position> {
        let mut p = pointer;
        loop {
            if let Some((_, pos)) = self.0.iter().find(|(k, _)| k == p) {
                return Some(*pos);
            }
            p = &p[..p.rfind('/')?];
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub index: usize,
    pub value: Value,
    pub positions: Positions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub code: &'static str,
    pub document: Option<usize>,
    pub pointer: String,
    pub position: Position,
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nodes produced by expanding aliases, per file.
    pub max_alias_nodes: usize,
    pub max_depth: usize,
    pub max_documents: usize,
}

/// A container being built, with the pointer it lives at.
enum Frame {
    Seq { items: Vec<Value>, pointer: String, anchor: usize, nodes: usize },
    Map { map: Map<String, Value>, pointer: String, anchor: usize, nodes: usize, key: Option<(String, Position)> },
}

/// Parses every document of `text`. Stops at the first error, which names the document,
/// the pointer and the position.
pub fn parse(text: &str, limits: &Limits) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut positions = Vec::new();
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut root: Option<Value> = None;
    let error = |code, doc: usize, pointer: &str, mark: &Marker, message: String| YamlError {
        code,
        document: Some(doc),
        pointer: pointer.to_string(),
        position: Position::of(mark),
        message,
    };
    loop {
        let doc = docs.len();
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            code: "yaml.syntax",
            document: Some(doc),
            pointer: String::new(),
            position: Position::of(e.marker()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        // The value completed by this event, with its anchor id and node count (whole subtree).
        let completed: Option<(Value, usize, usize)> = match event {
            Event::StreamEnd => return Ok(docs),
            Event::StreamStart | Event::Nothing => None,
            Event::DocumentStart => {
                if doc >= limits.max_documents {
                    return Err(error(
                        "yaml.documents",
                        doc,
                        "",
                        &mark,
                        format!("more than {} documents in one file", limits.max_documents),
                    ));
                }
                root = None;
                anchors.clear();
                None
            }
            Event::DocumentEnd => {
                // An empty document (e.g. a trailing `---`) holds no object; skip it.
                if let Some(value) = root.take().filter(|v| !v.is_null()) {
                    docs.push(Document { index: doc, value, positions: Positions(std::mem::take(&mut positions)) });
                } else {
                    positions.clear();
                    docs.push(Document { index: doc, value: Value::Null, positions: Positions::default() });
                }
                None
            }
            Event::Alias(id) => {
                let pointer = child_pointer(&stack);
                if matches!(stack.last(), Some(Frame::Map { key: None, .. })) {
                    return Err(error(
                        "yaml.complex_key",
                        doc,
                        &pointer,
                        &mark,
                        "mapping keys must be plain values".into(),
                    ));
                }
                let Some((value, nodes)) = anchors.get(&id) else {
                    return Err(error("yaml.syntax", doc, &pointer, &mark, "alias to an unknown anchor".into()));
                };
                alias_nodes = alias_nodes.saturating_add(*nodes);
                if alias_nodes > limits.max_alias_nodes {
                    return Err(error(
                        "yaml.alias_limit",
                        doc,
                        &pointer,
                        &mark,
                        format!("aliases expand to more than {} nodes (a YAML alias bomb?)", limits.max_alias_nodes),
                    ));
                }
                positions.push((pointer, Position::of(&mark)));
                Some((value.clone(), 0, *nodes))
            }
            Event::Scalar(text, style, anchor, tag) => {
                let pointer = child_pointer(&stack);
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key {
                    let Some(Frame::Map { map, key, pointer: map_pointer, .. }) = stack.last_mut() else { continue };
                    if map.contains_key(&text) {
                        let at = format!("{map_pointer}/{}", escape(&text));
                        return Err(error("yaml.duplicate_key", doc, &at, &mark, format!("duplicate key {text:?}")));
                    }
                    *key = Some((text, Position::of(&mark)));
                    continue;
                }
                positions.push((pointer, Position::of(&mark)));
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !forced_string {
                    plain_scalar(&text)
                } else {
                    Value::String(text)
                };
                Some((value, anchor, 1))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let pointer = child_pointer(&stack);
                if matches!(stack.last(), Some(Frame::Map { key: None, .. })) {
                    return Err(error(
                        "yaml.complex_key",
                        doc,
                        &pointer,
                        &mark,
                        "mapping keys must be plain values".into(),
                    ));
                }
                if stack.len() >= limits.max_depth {
                    return Err(error(
                        "yaml.depth",
                        doc,
                        &pointer,
                        &mark,
                        format!("nested deeper than {} levels", limits.max_depth),
                    ));
                }
                positions.push((pointer.clone(), Position::of(&mark)));
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { items: Vec::new(), pointer, anchor, nodes: 1 }
                } else {
                    Frame::Map { map: Map::new(), pointer, anchor, nodes: 1, key: None }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { items, anchor, nodes, .. }) => Some((Value::Array(items), anchor, nodes)),
                Some(Frame::Map { map, anchor, nodes, .. }) => Some((Value::Object(map), anchor, nodes)),
                None => None,
            },
        };
        let Some((value, anchor, nodes)) = completed else { continue };
        if anchor > 0 {
            anchors.insert(anchor, (value.clone(), nodes));
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Frame::Seq { items, nodes: total, .. }) => {
                *total = total.saturating_add(nodes);
                items.push(value);
            }
            Some(Frame::Map { map, key, nodes: total, .. }) => {
                *total = total.saturating_add(nodes);
                if let Some((k, _)) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }
}

/// The pointer of the next value inside the innermost container.
fn child_pointer(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Seq { items, pointer, .. }) => format!("{pointer}/{}", items.len()),
        Some(Frame::Map { key: Some((k, _)), pointer, .. }) => format!("{pointer}/{}", escape(k)),
        Some(Frame::Map { pointer, .. }) => pointer.clone(),
    }
}

/// JSON pointer escaping of one reference token.
pub fn escape(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_string()
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Number(i.into());
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Number(i.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Number(i.into());
        }
    }
    let looks_float = unsigned.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && unsigned.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && unsigned.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits { max_alias_nodes: 10_000, max_depth: 64, max_documents: 1000 };

    #[test]
    fn documents_values_and_positions() {
        let docs = parse("a: 1\nb:\n  - x\n  - 'true'\n  - true\n---\nc: null\nd: 1.5\ne: \"7\"\n", &LIMITS).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value, json!({"a": 1, "b": ["x", "true", true]}));
        assert_eq!(docs[1].value, json!({"c": null, "d": 1.5, "e": "7"}));
        assert_eq!(docs[0].positions.find("/b/1"), Some(Position { line: 4, column: 5 }));
        assert_eq!(docs[1].positions.find("/d"), Some(Position { line: 8, column: 4 }));
        // An unknown pointer falls back to its nearest ancestor.
        assert_eq!(docs[0].positions.find("/b/1/zz"), Some(Position { line: 4, column: 5 }));
    }

    #[test]
    fn empty_documents_are_kept_as_null() {
        let docs = parse("---\n---\na: 1\n", &LIMITS).unwrap();
        assert_eq!(docs.iter().map(|d| d.value.clone()).collect::<Vec<_>>(), vec![Value::Null, json!({"a": 1})]);
        assert!(parse("", &LIMITS).unwrap().is_empty());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: 1\nb: [unclosed\n", &LIMITS).unwrap_err();
        assert_eq!(err.code, "yaml.syntax");
        assert!(err.position.line >= 2, "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_rejected_at_the_key() {
        let err = parse("spec:\n  role: a\n  role: b\n", &LIMITS).unwrap_err();
        assert_eq!((err.code, err.pointer.as_str(), err.position.line), ("yaml.duplicate_key", "/spec/role", 3));
    }

    #[test]
    fn aliases_expand_within_limits_and_bombs_stop() {
        let docs = parse("base: &b {x: 1}\ncopy: *b\n", &LIMITS).unwrap();
        assert_eq!(docs[0].value, json!({"base": {"x": 1}, "copy": {"x": 1}}));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse(&bomb, &LIMITS).unwrap_err();
        assert_eq!(err.code, "yaml.alias_limit");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(parse(&deep, &LIMITS).unwrap_err().code, "yaml.depth");
    }

    #[test]
    fn scalars_resolve_like_kubernetes() {
        let docs = parse("[1, -2, 0x1f, 1e3, .5, abc, ~, 1.2.3, '1', !!str 5, 10.0.0.0/8]", &LIMITS).unwrap();
        assert_eq!(docs[0].value, json!([1, -2, 31, 1000.0, 0.5, "abc", null, "1.2.3", "1", "5", "10.0.0.0/8"]));
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            "{",
            "}",
            "[",
            "a: b: c",
            "- - - -",
            "&a *a",
            "*x",
            "? [a]\n: b",
            "!<tag> x",
            ":\n:",
            "\t- a",
            "a: |\n  b\n c",
        ] {
            let _ = parse(input, &LIMITS);
        }
    }
}
