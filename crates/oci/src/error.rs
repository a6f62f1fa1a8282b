use std::path::PathBuf;

use crate::digest::Digest;

/// What went wrong importing an image.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error(
        "{what} does not match its digest: expected {expected}, got {actual}; the source is corrupt or was tampered with"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} is {actual} bytes but its descriptor says {expected}: it is {}", if actual < expected { "truncated" } else { "oversized" })]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} is larger than the {limit} bytes accepted")]
    TooLarge { what: String, limit: u64 },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error(
        "{reference} has no image for {wanted}; it has: {available}. Choose one with --platform"
    )]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    /// A registry's certificate directory (Docker's `certs.d/HOST[:PORT]`) or a file in it.
    #[error("registry certificates {}: {reason}", path.display())]
    RegistryCerts { path: PathBuf, reason: String },
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    HostileLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: cannot write {entry:?}: {source}")]
    Write {
        layer: String,
        entry: String,
        #[source]
        source: crate::unpack::SinkError,
    },
    #[error("layer {layer} has media type {media_type:?}, which cannot be imported")]
    UnsupportedLayer { layer: String, media_type: String },
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

pub type Result<T> = std::result::Result<T, OciError>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io(ignite_host_tools::PathError::new(action, path, source))
}
