//! The subset of Go's `text/template` that Ignite users put in `-t` and `-f`:
//! `{{.ObjectMeta.Name}}`, `{{.Spec.Image.OCI}}`, `{{.Status.Network.IPAddresses}}`,
//! plus `{{.}}`, `{{json .Path}}` and `{{-`/`-}}` trimming.
//!
//! Field names are Ignite's Go names (matched without regard to case, so the JSON names
//! work too). A path is checked against the kind's full schema when the template is
//! compiled, so a typo is an error rather than an empty column.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::humanize;

/// What the template engine needs to know about a kind.
pub trait TemplateSubject: Serialize {
    /// The kind's name, for error messages.
    const KIND: &'static str;

    /// An instance with every optional field set and every list non-empty: the schema
    /// that template paths are checked against.
    fn schema() -> Value;

    /// How a field is shown when Ignite shows it differently from its JSON form (sizes as
    /// `4.0 GB`, times as ages, lists joined with `, `). `pointer` is a JSON pointer.
    fn display(&self, pointer: &str, now: DateTime<Utc>) -> Option<String>;
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: {reason}")]
    Syntax { template: String, reason: String },
    #[error("template {template:?}: {kind} has no field {field}{hint}")]
    UnknownField {
        template: String,
        kind: &'static str,
        field: String,
        hint: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    /// `shape` is the field's node in the kind's schema: what Go would print for it when
    /// the object leaves it out (a zero value, or `<nil>`), and a struct's field order.
    Field {
        pointer: String,
        json: bool,
        shape: Value,
    },
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Compiles `source` for objects of kind `T`.
    pub fn compile<T: TemplateSubject>(source: &str) -> Result<Template, TemplateError> {
        let syntax = |reason: String| TemplateError::Syntax {
            template: source.to_string(),
            reason,
        };
        let schema = T::schema();
        let mut segments = Vec::new();
        let mut rest = source;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start();
            }
            let after_open = &rest[open + 2..];
            let close = after_open
                .find("}}")
                .ok_or_else(|| syntax("unclosed action: a \"{{\" has no \"}}\"".into()))?;
            let mut action = &after_open[..close];
            if let Some(a) = action.strip_prefix("- ") {
                text = text.trim_end();
                action = a;
            }
            trim_next_text = false;
            if let Some(a) = action.strip_suffix(" -") {
                trim_next_text = true;
                action = a;
            }
            if !text.is_empty() {
                segments.push(Segment::Text(text.to_string()));
            }
            segments.push(compile_action::<T>(source, action.trim(), &schema)?);
            rest = &after_open[close + 2..];
        }
        if rest.contains("}}") {
            return Err(syntax("a \"}}\" has no \"{{\"".into()));
        }
        let text = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !text.is_empty() {
            segments.push(Segment::Text(text.to_string()));
        }
        Ok(Template { segments })
    }

    /// Renders the template for one object.
    pub fn render<T: TemplateSubject>(&self, object: &T, now: DateTime<Utc>) -> String {
        let tree = serde_json::to_value(object).expect("API objects always serialize");
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Field {
                    pointer,
                    json: true,
                    ..
                } => {
                    let v = tree.pointer(pointer).unwrap_or(&Value::Null);
                    out.push_str(&serde_json::to_string(v).expect("a JSON tree serializes"));
                }
                Segment::Field {
                    pointer,
                    json: false,
                    shape,
                } => {
                    if let Some(shown) = object.display(pointer, now) {
                        out.push_str(&shown);
                    } else {
                        let is_map = is_map_pointer(pointer);
                        match tree.pointer(pointer) {
                            Some(v) => go_format(v, shape, is_map, &mut out),
                            // Go's missing map key.
                            None if is_map_entry(pointer) => out.push_str("<no value>"),
                            // A field its struct leaves out is Go's zero value; below a
                            // struct that is not there at all (a nil pointer), nothing is.
                            None if parent_exists(&tree, pointer) => {
                                go_zero(shape, is_map, &mut out)
                            }
                            None => out.push_str("<nil>"),
                        }
                    }
                }
            }
        }
        out
    }
}

fn compile_action<T: TemplateSubject>(
    source: &str,
    action: &str,
    schema: &Value,
) -> Result<Segment, TemplateError> {
    let (json, path) = match action.split_once(char::is_whitespace) {
        Some(("json", path)) => (true, path.trim()),
        Some((func, _)) => {
            return Err(TemplateError::Syntax {
                template: source.to_string(),
                reason: format!(
                    "function {func:?} is not supported; use {{{{.Path}}}} or {{{{json .Path}}}}"
                ),
            });
        }
        None => (false, action),
    };
    let pointer = resolve_path::<T>(source, path, schema)?;
    let shape = schema.pointer(&pointer).cloned().unwrap_or(Value::Null);
    Ok(Segment::Field {
        pointer,
        json,
        shape,
    })
}

/// Turns `.ObjectMeta.Name` into the JSON pointer `/metadata/name`.
fn resolve_path<T: TemplateSubject>(
    source: &str,
    path: &str,
    schema: &Value,
) -> Result<String, TemplateError> {
    if path == "." {
        return Ok(String::new());
    }
    let Some(fields) = path.strip_prefix('.') else {
        return Err(TemplateError::Syntax {
            template: source.to_string(),
            reason: format!(
                "{path:?} is not a field path; paths start with '.', e.g. {{{{.ObjectMeta.Name}}}}"
            ),
        });
    };
    let mut pointer = String::new();
    let mut node = schema;
    for (depth, field) in fields.split('.').enumerate() {
        let unknown = |node: &Value| {
            let hint = match node {
                Value::Object(map) => format!(
                    " (fields here: {})",
                    map.keys()
                        .map(|k| go_name(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            };
            TemplateError::UnknownField {
                template: source.to_string(),
                kind: T::KIND,
                field: path.to_string(),
                hint,
            }
        };
        // Go's embedded structs: VM embeds TypeMeta and ObjectMeta, whose fields are also
        // reachable from the top (`.Name`, `.Kind`).
        if depth == 0 && field == "TypeMeta" {
            continue;
        }
        let field = if depth == 0 && field == "ObjectMeta" {
            "metadata"
        } else {
            field
        };
        let map = match node {
            Value::Object(map) => map,
            _ => return Err(unknown(node)),
        };
        // Labels and annotations are maps: any key is valid.
        if pointer == "/metadata/labels" || pointer == "/metadata/annotations" {
            pointer.push('/');
            pointer.push_str(&escape_pointer(field));
            return Ok(pointer);
        }
        let key = map
            .keys()
            .find(|k| k.as_str() == field)
            .or_else(|| map.keys().find(|k| k.eq_ignore_ascii_case(field)));
        match key {
            Some(k) => {
                pointer.push('/');
                pointer.push_str(&escape_pointer(k));
                node = &map[k];
            }
            None if depth == 0 && schema.get("metadata").is_some() => {
                let meta = &schema["metadata"];
                let k = meta
                    .as_object()
                    .and_then(|m| m.keys().find(|k| k.eq_ignore_ascii_case(field)))
                    .ok_or_else(|| unknown(node))?;
                pointer.push_str("/metadata/");
                pointer.push_str(&escape_pointer(k));
                node = &meta[k];
            }
            None => return Err(unknown(node)),
        }
    }
    Ok(pointer)
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `cmdLine` -> `CmdLine`, for hints in Go's spelling.
fn go_name(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Whether the object holding the field at `pointer` is in the tree.
fn parent_exists(tree: &Value, pointer: &str) -> bool {
    let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
    tree.pointer(parent).is_some_and(Value::is_object)
}

/// Labels and annotations are Go maps; every other object of the API is a Go struct.
fn is_map_pointer(pointer: &str) -> bool {
    matches!(pointer, "/metadata/labels" | "/metadata/annotations")
}

/// A key looked up in a map (`.ObjectMeta.Labels.app`).
fn is_map_entry(pointer: &str) -> bool {
    ["/metadata/labels/", "/metadata/annotations/"]
        .iter()
        .any(|p| pointer.starts_with(p))
}

/// Formats a value the way Go's `fmt` prints it in a template: structs as `{a b}` with
/// every field in order (left-out ones as their zero value, so an SSH spec that generates
/// a key is `{true }`), maps as `map[k:v]`, lists as `[a b]`. `shape` is the value's node
/// in the schema.
fn go_format(v: &Value, shape: &Value, is_map: bool, out: &mut String) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            let item_shape = shape.get(0).unwrap_or(&Value::Null);
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_format(item, item_shape, false, out);
            }
            out.push(']');
        }
        Value::Object(map) if is_map => {
            out.push_str("map[");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_format(item, &Value::Null, false, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // The schema's fields, in order; fields the schema lacks (none, normally) after.
            let empty = serde_json::Map::new();
            let fields = shape.as_object().unwrap_or(&empty);
            out.push('{');
            let mut first = true;
            let mut field = |out: &mut String, value: Option<&Value>, shape: &Value, key: &str| {
                if !first {
                    out.push(' ');
                }
                first = false;
                let is_map = key == "labels" || key == "annotations";
                match value {
                    Some(v) => go_format(v, shape, is_map, out),
                    None => go_zero(shape, is_map, out),
                }
            };
            for (key, field_shape) in fields {
                field(out, map.get(key), field_shape, key);
            }
            for (key, value) in map.iter().filter(|(k, _)| !fields.contains_key(*k)) {
                field(out, Some(value), &Value::Null, key);
            }
            out.push('}');
        }
    }
}

/// What Go prints for a field the object leaves out: its zero value, judged by its
/// schema node (`""` for text, `0`, `false`, `[]`, `map[]`), and `<nil>` for an optional
/// struct (a Go pointer).
fn go_zero(shape: &Value, is_map: bool, out: &mut String) {
    match shape {
        Value::String(_) => {}
        Value::Number(_) => out.push('0'),
        Value::Bool(_) => out.push_str("false"),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) if is_map => out.push_str("map[]"),
        Value::Object(_) | Value::Null => out.push_str("<nil>"),
    }
}

/// The shared `display` rules: sizes, ages, lists of ports and addresses.
pub(crate) fn humanize_time(t: &crate::meta::Time, now: DateTime<Utc>) -> String {
    humanize::age(t.0, now)
}
