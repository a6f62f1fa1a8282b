//! Reading and writing objects as JSON or YAML.
//!
//! Input is first parsed into a generic tree and then decoded, so a bad field is reported
//! with its path (`spec.network.ports[0].hostPort: ...`) whichever format it came in.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::configuration::Configuration;
use crate::image::Image;
use crate::kernel::Kernel;
use crate::meta::Kind;
use crate::vm::Vm;

/// Manifests larger than this are refused: they are hand-written documents, and a GitOps
/// repository is untrusted input.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the manifest is {0} bytes; at most {MAX_MANIFEST_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the manifest is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("the manifest has no \"kind\"; expected one of VM, Image, Kernel, Configuration")]
    MissingKind,
    #[error("unknown kind {0:?}; expected one of VM, Image, Kernel, Configuration")]
    UnknownKind(String),
}

/// An object of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Vm(Box<Vm>),
    Image(Box<Image>),
    Kernel(Box<Kernel>),
    Configuration(Box<Configuration>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Vm(_) => Kind::Vm,
            Object::Image(_) => Kind::Image,
            Object::Kernel(_) => Kind::Kernel,
            Object::Configuration(_) => Kind::Configuration,
        }
    }
}

/// Guesses the format: JSON documents start with `{`.
pub fn detect_format(input: &str) -> Format {
    if input.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    }
}

fn parse_tree(input: &str) -> Result<serde_json::Value, DecodeError> {
    if input.len() > MAX_MANIFEST_BYTES {
        return Err(DecodeError::TooLarge(input.len()));
    }
    match detect_format(input) {
        Format::Json => serde_json::from_str(input).map_err(|e| DecodeError::Syntax {
            format: "JSON",
            message: e.to_string(),
        }),
        Format::Yaml => serde_saphyr::from_str(input).map_err(|e| DecodeError::Syntax {
            format: "YAML",
            message: e.to_string(),
        }),
    }
}

fn from_tree<T: DeserializeOwned>(tree: serde_json::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        DecodeError::Field {
            path: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Decodes one object of a known type from JSON or YAML.
pub fn decode<T: DeserializeOwned>(input: &str) -> Result<T, DecodeError> {
    from_tree(parse_tree(input)?)
}

/// Decodes one object of whatever kind the manifest says.
pub fn decode_object(input: &str) -> Result<Object, DecodeError> {
    let tree = parse_tree(input)?;
    let kind = tree
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or(DecodeError::MissingKind)?
        .to_string();
    Ok(match kind.as_str() {
        "VM" => Object::Vm(Box::new(from_tree(tree)?)),
        "Image" => Object::Image(Box::new(from_tree(tree)?)),
        "Kernel" => Object::Kernel(Box::new(from_tree(tree)?)),
        "Configuration" => Object::Configuration(Box::new(from_tree(tree)?)),
        _ => return Err(DecodeError::UnknownKind(kind)),
    })
}

/// Pretty JSON with two-space indentation and a final newline, fields in declaration order
/// (`kind`, `apiVersion`, `metadata`, `spec`, `status`), as Ignite writes it.
pub fn to_json<T: Serialize>(object: &T) -> String {
    let mut s = serde_json::to_string_pretty(object).expect("API objects always serialize");
    s.push('\n');
    s
}

/// YAML with keys sorted, as Ignite writes it.
pub fn to_yaml<T: Serialize>(object: &T) -> String {
    // A serde_json tree keeps its keys sorted, which gives Ignite's order.
    let tree = serde_json::to_value(object).expect("API objects always serialize");
    serde_saphyr::to_string(&tree).expect("a JSON tree always serializes as YAML")
}
